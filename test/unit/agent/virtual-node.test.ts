import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { abortOf } from '../../../src/abort.js';
import { VirtualNode, type VirtualNodeOptions } from '../../../src/agent/virtual-node.js';
import { permanent } from '../../../src/errors.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { FakeApi } from '../../helpers/fake-api.js';

const NODE = 'agent-node';

/** The mock, recording each `close(signal)` and taking until its signal aborts to finish. */
class ClosingMock extends MockProvider {
  readonly closes: { readonly signal: AbortSignal; readonly at: number }[] = [];
  abortedAfterMs: number | undefined;
  failClose = false;

  override async close(signal?: AbortSignal): Promise<void> {
    assert.ok(signal, 'close is given a signal');
    const at = performance.now();
    this.closes.push({ signal, at });
    await abortOf(signal);
    this.abortedAfterMs = performance.now() - at;
    await super.close();
    if (this.failClose) throw permanent('the backend refuses to close');
  }
}

/** A VirtualNode of `provider` against an in-memory API, running until `stop`. */
async function runNode(
  t: TestContext,
  provider: MockProvider,
  options: Partial<VirtualNodeOptions> = {},
): Promise<{ stop(): Promise<void> }> {
  const api = await FakeApi.start(t);
  const node = new VirtualNode({
    client: api.client,
    nodeName: NODE,
    provider,
    node: { leaseRenewIntervalMs: 50, statusUpdateIntervalMs: 100, pingIntervalMs: 50 },
    pods: { pollIntervalMs: 50, fullResyncPeriodMs: 0 },
    ...options,
  });
  const abort = new AbortController();
  const running = node.run(abort.signal);
  t.after(async () => {
    abort.abort();
    await running.catch(() => undefined);
  });
  await Promise.race([node.whenReady(), running]);
  return {
    stop: async () => {
      abort.abort();
      await running;
    },
  };
}

test('closeProvider: true closes the provider once on shutdown, with a signal that aborts after closeTimeoutMs', async (t) => {
  const provider = new ClosingMock({ nodeName: NODE });
  const node = await runNode(t, provider, { closeProvider: true, closeTimeoutMs: 100 });
  assert.equal(provider.closes.length, 0, 'not closed while the node runs');
  const stopping = performance.now();
  await node.stop();
  assert.equal(provider.closes.length, 1);
  const [close] = provider.closes;
  assert.ok(close);
  assert.ok(close.at >= stopping);
  assert.equal(close.signal.aborted, true);
  assert.equal((close.signal.reason as Error).name, 'TimeoutError');
  assert.ok(
    provider.abortedAfterMs !== undefined && provider.abortedAfterMs >= 90,
    `the signal aborted after ${String(provider.abortedAfterMs)} ms`,
  );
});

test('a provider whose close fails does not make the run fail', async (t) => {
  const provider = new ClosingMock({ nodeName: NODE });
  provider.failClose = true;
  const node = await runNode(t, provider, { closeProvider: true, closeTimeoutMs: 20 });
  await node.stop();
  assert.equal(provider.closes.length, 1);
});

test('without closeProvider the node leaves its provider open', async (t) => {
  const provider = new ClosingMock({ nodeName: NODE });
  t.after(() => provider.close(AbortSignal.abort()));
  const node = await runNode(t, provider);
  // The run resolves after the shutdown, close included, has finished.
  await node.stop();
  assert.equal(provider.closes.length, 0);
});
