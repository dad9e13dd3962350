/**
 * Serves a provider of this package over the provider protocol: the other half of
 * `ExternalProvider`. A provider written for Node can run out of process with it, and the
 * protocol's tests run the in-process providers through it.
 */
import type { V1Node, V1Pod } from '../../wire.js';
import type { EventEmitter } from 'node:events';
import { Duplex, PassThrough, Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { invalidInput, notImplemented } from '../../errors.js';
import {
  CAPABILITY_NAMES,
  hasCapability,
  notImplementedMessage,
  type Capability,
  type CapabilityInterfaces,
  type PodEvent,
  type Provider,
  type TerminalSize,
} from '../../provider.js';
import {
  NOT_CARRIED,
  PROTOCOL_VERSION,
  providerService,
  toServiceError,
  type GetPodResponse,
  type GetPodStatusResponse,
  type HandshakeRequest,
  type HandshakeResponse,
  type ListPodsResponse,
  type LogChunk,
  type LogsRequest,
  type NodeUpdate,
  type PodEventUpdate,
  type PodKey,
  type PodRequest,
  type PodUpdate,
  type PortForwardRequest,
  type PortForwardResponse,
  type PreparePodResponse,
  type SetPodVolumesRequest,
  type StreamRequest,
  type StreamResponse,
} from './protocol.js';

export interface ProviderServerOptions {
  readonly provider: Provider;
  /** The name the handshake reports. Default: `virtual-kubelet`. */
  readonly name?: string;
}

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const parse = (bytes: Buffer, what: string): unknown => {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw invalidInput(`${what} is not valid JSON`, err);
  }
};

/** A queue of terminal sizes read as an async iterable, ended by `close()`. */
class SizeQueue implements AsyncIterable<TerminalSize> {
  readonly #items: TerminalSize[] = [];
  #wake: (() => void) | undefined;
  #closed = false;

  push(size: TerminalSize): void {
    this.#items.push(size);
    this.#wake?.();
  }

  close(): void {
    this.#closed = true;
    this.#wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    for (;;) {
      const next = this.#items.shift();
      if (next) yield next;
      else if (this.#closed) return;
      else await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }
}

/** The chunks a writable queued meanwhile, as one buffer: they go as one message. */
const joined = (chunks: readonly { chunk: unknown }[]): Buffer =>
  Buffer.concat(chunks.map((c) => c.chunk as Buffer));

/**
 * A writable whose chunks become messages of `call`, with the call's back-pressure; chunks
 * written while a message waits for the call go together in the next one.
 */
function messageWriter(
  call: grpc.ServerDuplexStream<StreamRequest, StreamResponse>,
  kind: 'stdout' | 'stderr',
): Writable {
  const send = (chunk: Buffer, callback: () => void): void => {
    if (call.cancelled || call.destroyed) {
      callback();
      return;
    }
    const message = kind === 'stdout' ? { stdout: chunk } : { stderr: chunk };
    if (call.write(message)) callback();
    else call.once('drain', () => callback());
  };
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      send(chunk, callback);
    },
    writev(chunks, callback) {
      send(joined(chunks), callback);
    },
  });
}

/**
 * A gRPC server for one provider. `listen(address)` binds it (`unix:///path` or `host:port`,
 * port 0 for any); `close()` ends every call and stops it. The provider's notifications are
 * subscribed once, at construction, as the contract wants, and fanned out to every watch call.
 */
export class ProviderServer {
  readonly #provider: Provider;
  readonly #name: string;
  readonly #server = new grpc.Server();
  readonly #podWatchers = new Set<grpc.ServerWritableStream<unknown, PodUpdate>>();
  readonly #nodeWatchers = new Set<grpc.ServerWritableStream<unknown, NodeUpdate>>();
  readonly #eventWatchers = new Set<grpc.ServerWritableStream<unknown, PodEventUpdate>>();

  constructor(options: ProviderServerOptions) {
    this.#provider = options.provider;
    this.#name = options.name ?? 'virtual-kubelet';
    const p = this.#provider;
    if (hasCapability(p, 'podNotifier'))
      p.notifyPods((pod) => this.#fanOut(this.#podWatchers, { podJson: json(pod) }));
    if (hasCapability(p, 'nodeProvider'))
      p.notifyNodeStatus((node) => this.#fanOut(this.#nodeWatchers, { nodeJson: json(node) }));
    if (hasCapability(p, 'events'))
      p.notifyPodEvents((pod, event) => this.#fanOut(this.#eventWatchers, eventUpdate(pod, event)));
    this.#server.addService(providerService().service, this.#handlers());
  }

  /** The capabilities the handshake reports: every one the protocol carries that the provider has. */
  get capabilities(): Capability[] {
    return CAPABILITY_NAMES.filter((c) => !NOT_CARRIED.has(c) && hasCapability(this.#provider, c));
  }

  /**
   * Binds `address`; resolves to the port bound (0 for a unix socket). `credentials` default to
   * none (plain text, for unix sockets).
   */
  listen(address: string, credentials = grpc.ServerCredentials.createInsecure()): Promise<number> {
    return new Promise((resolve, reject) => {
      this.#server.bindAsync(address, credentials, (err, port) => {
        if (err) reject(err);
        else resolve(port);
      });
    });
  }

  /** Ends every call at once and stops listening. Idempotent. */
  close(): void {
    for (const watchers of [this.#podWatchers, this.#nodeWatchers, this.#eventWatchers])
      for (const w of watchers) w.end();
    this.#server.forceShutdown();
  }

  #fanOut<T>(watchers: ReadonlySet<grpc.ServerWritableStream<unknown, T>>, message: T): void {
    for (const w of watchers) w.write(message);
  }

  #watch<T>(
    capability: Capability,
    watchers: Set<grpc.ServerWritableStream<unknown, T>>,
  ): grpc.handleServerStreamingCall<unknown, T> {
    return (call) => {
      if (!hasCapability(this.#provider, capability)) {
        fail(call, notImplemented(notImplementedMessage(capability)));
        return;
      }
      watchers.add(call);
      call.sendMetadata(new grpc.Metadata());
      const drop = (): void => {
        watchers.delete(call);
      };
      call.on('cancelled', drop);
      call.on('close', drop);
      call.on('error', drop);
    };
  }

  /** A unary handler: `fn` gets the request and a signal that fires when the call is cancelled. */
  #unary<Req, Res>(
    fn: (request: Req, signal: AbortSignal) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, callback) => {
      const controller = new AbortController();
      call.on('cancelled', () => controller.abort(new Error('the call was cancelled')));
      fn(call.request, controller.signal).then(
        (response) => callback(null, response),
        (err: unknown) => callback(toServiceError(err)),
      );
    };
  }

  /** `fn` of capability `c`, or NotImplemented. */
  #need<C extends Capability>(c: C): Provider & CapabilityInterfaces[C] {
    const p = this.#provider;
    if (!hasCapability(p, c)) throw notImplemented(notImplementedMessage(c));
    return p;
  }

  #handlers(): grpc.UntypedServiceImplementation {
    const p = this.#provider;
    const empty = {};
    return {
      Handshake: this.#unary<HandshakeRequest, HandshakeResponse>((req) => {
        if (!req.versions.includes(PROTOCOL_VERSION)) {
          return Promise.reject(
            invalidInput(
              `the agent speaks protocol versions ${req.versions.join(', ') || '(none)'}; this provider speaks ${PROTOCOL_VERSION}`,
            ),
          );
        }
        return Promise.resolve({
          version: PROTOCOL_VERSION,
          capabilities: this.capabilities,
          providerName: this.#name,
        });
      }),
      CreatePod: this.#unary<PodRequest, object>(async (req, signal) => {
        await p.createPod(parse(req.podJson, 'pod_json') as V1Pod, signal);
        return empty;
      }),
      UpdatePod: this.#unary<PodRequest, object>(async (req, signal) => {
        await p.updatePod(parse(req.podJson, 'pod_json') as V1Pod, signal);
        return empty;
      }),
      DeletePod: this.#unary<PodRequest, object>(async (req, signal) => {
        await p.deletePod(parse(req.podJson, 'pod_json') as V1Pod, signal);
        return empty;
      }),
      GetPod: this.#unary<PodKey, GetPodResponse>(async (req, signal) => {
        const pod = await p.getPod(req.namespace, req.name, signal);
        return pod
          ? { found: true, podJson: json(pod) }
          : { found: false, podJson: Buffer.alloc(0) };
      }),
      GetPodStatus: this.#unary<PodKey, GetPodStatusResponse>(async (req, signal) => {
        const status = await p.getPodStatus(req.namespace, req.name, signal);
        return status
          ? { found: true, statusJson: json(status) }
          : { found: false, statusJson: Buffer.alloc(0) };
      }),
      ListPods: this.#unary<unknown, ListPodsResponse>(async (_req, signal) => ({
        podsJson: (await p.getPods(signal)).map(json),
      })),
      WatchPods: this.#watch('podNotifier', this.#podWatchers),
      Ping: this.#unary<unknown, object>(async (_req, signal) => {
        await this.#need('nodeProvider').ping(signal);
        return empty;
      }),
      WatchNodeStatus: this.#watch('nodeProvider', this.#nodeWatchers),
      ConfigureNode: this.#unary<{ nodeJson: Buffer }, { nodeJson: Buffer }>(async (req) => {
        const node = parse(req.nodeJson, 'node_json') as V1Node;
        await this.#need('nodeConfigurer').configureNode(node);
        return { nodeJson: json(node) };
      }),
      WatchPodEvents: this.#watch('events', this.#eventWatchers),
      GetContainerLogs: (call: grpc.ServerWritableStream<LogsRequest, LogChunk>) => {
        void this.#logs(call);
      },
      Exec: (call: grpc.ServerDuplexStream<StreamRequest, StreamResponse>) => {
        void this.#session(call, 'exec');
      },
      Attach: (call: grpc.ServerDuplexStream<StreamRequest, StreamResponse>) => {
        void this.#session(call, 'attach');
      },
      PortForward: (call: grpc.ServerDuplexStream<PortForwardRequest, PortForwardResponse>) => {
        void this.#portForward(call);
      },
      GetStatsSummary: this.#unary<unknown, { summaryJson: Buffer }>(async (_req, signal) => ({
        summaryJson: json(await this.#need('stats').getStatsSummary(signal)),
      })),
      GetMetricsResource: this.#unary<unknown, { text: string }>(async (_req, signal) => ({
        text: await this.#need('metricsResource').getMetricsResource(signal),
      })),
      SetPodVolumes: this.#unary<SetPodVolumesRequest, object>(async (req, signal) => {
        await this.#need('volumes').setPodVolumes(
          parse(req.podJson, 'pod_json') as V1Pod,
          req.volumes.map((v) => ({
            name: v.name,
            files: v.files.map((f) => ({
              path: f.path,
              data: f.data,
              mode: f.mode,
              ...(f.owner !== undefined ? { owner: f.owner } : {}),
            })),
          })),
          signal,
        );
        return empty;
      }),
      PreparePod: this.#unary<PodRequest, PreparePodResponse>(async (req, signal) => {
        const a = await this.#need('podAddresses').preparePod(
          parse(req.podJson, 'pod_json') as V1Pod,
          signal,
        );
        return { podIps: [...a.podIPs], hostIp: a.hostIP ?? '' };
      }),
    };
  }

  async #logs(call: grpc.ServerWritableStream<LogsRequest, LogChunk>): Promise<void> {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new Error('the call was cancelled')));
    try {
      const r = call.request;
      const stream = await this.#need('logs').getContainerLogs(
        r.namespace,
        r.pod,
        r.container,
        {
          follow: r.follow,
          previous: r.previous,
          timestamps: r.timestamps,
          ...(r.tailLines !== undefined ? { tailLines: r.tailLines } : {}),
          ...(r.limitBytes !== undefined ? { limitBytes: r.limitBytes } : {}),
          ...(r.sinceSeconds !== undefined ? { sinceSeconds: r.sinceSeconds } : {}),
          ...(r.sinceTime !== undefined ? { sinceTime: new Date(r.sinceTime) } : {}),
        },
        controller.signal,
      );
      // Accepted: the headers tell the agent so before the first line.
      call.sendMetadata(new grpc.Metadata());
      controller.signal.addEventListener('abort', () => stream.destroy(), { once: true });
      for await (const chunk of stream) {
        const data = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk));
        if (!call.write({ data })) await new Promise((resolve) => call.once('drain', resolve));
        if (controller.signal.aborted) return;
      }
      call.end();
    } catch (err) {
      if (!controller.signal.aborted) fail(call, err);
    }
  }

  async #session(
    call: grpc.ServerDuplexStream<StreamRequest, StreamResponse>,
    kind: 'exec' | 'attach',
  ): Promise<void> {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new Error('the call was cancelled')));
    const first = await new Promise<StreamRequest | undefined>((resolve) => {
      call.once('data', resolve);
      call.once('end', () => resolve(undefined));
      call.once('error', () => resolve(undefined));
    });
    if (first?.kind !== 'start') {
      fail(call, invalidInput('the first message must be start'));
      return;
    }
    const start = first.start;
    const stdin = start.stdin ? new PassThrough() : undefined;
    const sizes = new SizeQueue();
    call.on('data', (m: StreamRequest) => {
      if (m.kind === 'stdin') {
        if (stdin && !stdin.write(m.stdin)) {
          call.pause();
          stdin.once('drain', () => call.resume());
        }
      } else if (m.kind === 'stdinClose') stdin?.end();
      else if (m.kind === 'resize') sizes.push(m.resize);
    });
    call.on('end', () => {
      stdin?.end();
      sizes.close();
    });
    const streams = {
      tty: start.tty,
      ...(stdin ? { stdin } : {}),
      ...(start.stdout ? { stdout: messageWriter(call, 'stdout') } : {}),
      ...(start.stderr ? { stderr: messageWriter(call, 'stderr') } : {}),
      ...(start.tty ? { resize: sizes } : {}),
    };
    try {
      if (kind === 'exec') {
        const code = await this.#need('exec').runInContainer(
          start.namespace,
          start.pod,
          start.container,
          start.command,
          streams,
          controller.signal,
        );
        await flushed(streams.stdout);
        await flushed(streams.stderr);
        call.write({ exit: { code } });
      } else {
        await this.#need('attach').attachToContainer(
          start.namespace,
          start.pod,
          start.container,
          streams,
          controller.signal,
        );
        await flushed(streams.stdout);
        await flushed(streams.stderr);
      }
      call.end();
    } catch (err) {
      if (!controller.signal.aborted) fail(call, err);
    } finally {
      sizes.close();
      stdin?.destroy();
    }
  }

  async #portForward(
    call: grpc.ServerDuplexStream<PortForwardRequest, PortForwardResponse>,
  ): Promise<void> {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new Error('the call was cancelled')));
    const first = await new Promise<PortForwardRequest | undefined>((resolve) => {
      call.once('data', resolve);
      call.once('end', () => resolve(undefined));
      call.once('error', () => resolve(undefined));
    });
    if (first?.kind !== 'start') {
      fail(call, invalidInput('the first message must be start'));
      return;
    }
    const send = (data: Buffer, callback: () => void): void => {
      if (call.cancelled || call.destroyed) {
        callback();
        return;
      }
      if (call.write({ data })) callback();
      else call.once('drain', () => callback());
    };
    const stream = new Duplex({
      read() {
        call.resume();
      },
      write(chunk: Buffer, _encoding, callback) {
        send(chunk, callback);
      },
      writev(chunks, callback) {
        send(joined(chunks), callback);
      },
      final(callback) {
        call.end();
        callback();
      },
    });
    call.on('data', (m: PortForwardRequest) => {
      if (m.kind === 'data' && !stream.push(m.data)) call.pause();
      else if (m.kind === 'closeWrite') stream.push(null);
    });
    call.on('end', () => stream.push(null));
    try {
      await this.#need('portForward').portForward(
        first.start.namespace,
        first.start.pod,
        first.start.port,
        stream,
        controller.signal,
      );
      if (!stream.writableEnded) stream.end();
    } catch (err) {
      if (!controller.signal.aborted) fail(call, err);
    } finally {
      stream.destroy();
    }
  }
}

/**
 * Ends a streaming call with the status of `err`: grpc-js turns an 'error' event on the call
 * into the call's status (with the trailing metadata naming the exact code).
 */
function fail(call: EventEmitter, err: unknown): void {
  call.emit('error', toServiceError(err));
}

/** Resolves once what was written to `stream` has been handed on. */
function flushed(stream: Writable | undefined): Promise<void> {
  if (!stream || stream.writableLength === 0) return Promise.resolve();
  return new Promise((resolve) => {
    stream.write(Buffer.alloc(0), () => resolve());
  });
}

function eventUpdate(pod: V1Pod, event: PodEvent): PodEventUpdate {
  return { podJson: json(pod), type: event.type, reason: event.reason, message: event.message };
}
