import type { V1Pod } from '../../../../src/wire.js';
import type { Readable } from 'node:stream';
import { MockProvider, type MockProviderOptions } from '../../../../src/providers/mock/index.js';

export const signal = new AbortController().signal;

export function pod(name: string, patch: Partial<V1Pod['spec']> = {}): V1Pod {
  return {
    metadata: { namespace: 'ns', name, uid: `uid-${name}` },
    spec: { containers: [{ name: 'main', image: 'busybox' }], ...patch },
  };
}

/** A provider with a recording notifier; closed by the caller. */
export function mock(options: Partial<MockProviderOptions> = {}): {
  provider: MockProvider;
  pushed: V1Pod[];
} {
  const provider = new MockProvider({ nodeName: 'node-1', ...options });
  const pushed: V1Pod[] = [];
  provider.notifyPods?.((p) => pushed.push(p));
  return { provider, pushed };
}

/** Everything a stream yields, as text, once it ends. */
export async function text(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Collects what a stream emits, without waiting for its end. Wait for `done` with `waitFor`: the
 * mock's timers are unref'd, so an await on them alone would let the event loop run dry.
 */
export function collect(stream: Readable): {
  text: () => string;
  bytes: () => Buffer;
  readonly done: boolean;
} {
  const chunks: Buffer[] = [];
  let done = false;
  stream.on('data', (chunk: Buffer) => chunks.push(chunk));
  stream.once('end', () => {
    done = true;
  });
  return {
    text: () => Buffer.concat(chunks).toString('utf8'),
    bytes: () => Buffer.concat(chunks),
    get done() {
      return done;
    },
  };
}

/** An async iterable fed by `push`, ended by `end`: the shape of a session's resize events. */
export function channel<T>(): { push(value: T): void; end(): void; iterable: AsyncIterable<T> } {
  const queue: T[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  return {
    push(value) {
      queue.push(value);
      wake?.();
    },
    end() {
      done = true;
      wake?.();
    },
    iterable: {
      async *[Symbol.asyncIterator]() {
        for (;;) {
          const next = queue.shift();
          if (next !== undefined) {
            yield next;
            continue;
          }
          if (done) return;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          wake = undefined;
        }
      },
    },
  };
}
