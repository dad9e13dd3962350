import type { CoreV1Event, V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { BAD_POD_SPECS, badSpecObjects, badSpecPod } from '../../helpers/bad-pod-specs.js';
import { FakeApi } from '../../helpers/fake-api.js';
import { runPodController } from '../../helpers/pod-controller.js';
import { waitFor } from '../../helpers/wait.js';

const NODE = 'bad-specs-node';
const NS = 'bad';
const WAIT = { timeoutMs: 30_000, intervalMs: 50 };
/** How long the pods are watched after they settled: many poll periods, resyncs and retries. */
const SETTLE_MS = 1_500;

/** The mock, counting the creates it was asked for, by pod name. */
class CountingMock extends MockProvider {
  readonly creates = new Map<string, number>();

  override async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    const name = pod.metadata?.name ?? '';
    this.creates.set(name, (this.creates.get(name) ?? 0) + 1);
    await super.createPod(pod, signal);
  }
}

/** Events that say a pod could not be handed over. */
const FAILURE_REASONS = new Set(['InvalidPodSpec', 'ProviderCreateFailed', 'FailedSync']);

const eventsOf = (api: FakeApi, name: string): CoreV1Event[] =>
  api.list('events', NS).filter((e) => e.involvedObject.name === name);

test('the table has at least 50 specs with unique names', () => {
  assert.ok(BAD_POD_SPECS.length >= 50, `${String(BAD_POD_SPECS.length)} specs`);
  assert.equal(new Set(BAD_POD_SPECS.map((s) => s.name)).size, BAD_POD_SPECS.length);
  assert.equal(new Set(BAD_POD_SPECS.map((s) => s.pod.metadata?.name)).size, BAD_POD_SPECS.length);
});

for (const notify of [true, false]) {
  describe(`bad pod specs with a ${notify ? 'push' : 'polled'} mock provider`, () => {
    test('each gets its status and one Event; the node keeps running good pods', async (t) => {
      const api = await FakeApi.start(t);
      const { configMap, secret } = badSpecObjects(NS);
      api.create('configmaps', configMap);
      api.create('secrets', secret);
      const provider = new CountingMock({ nodeName: NODE, notify, config: { logIntervalMs: 0 } });
      t.after(() => provider.close());
      await runPodController(t, api, provider, {
        nodeName: NODE,
        // Resyncs every 200 ms: a refused pod must not be reported again on each.
        fullResyncPeriodMs: 200,
      });

      for (const spec of BAD_POD_SPECS) api.create('pods', badSpecPod(spec, NS, NODE));
      const good: V1Pod = {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { namespace: NS, name: 'good-after-bad' },
        spec: { nodeName: NODE, containers: [{ name: 'app', image: 'busybox:1' }] },
      };
      api.create('pods', good);
      // Generous: on a busy machine the bad ones' Events and statuses are written meanwhile.
      await waitFor(() => api.get('pods', NS, 'good-after-bad')?.status?.phase === 'Running', {
        ...WAIT,
        timeoutMs: 90_000,
        what: 'the good pod Running',
      });

      const settled = (name: string, spec: (typeof BAD_POD_SPECS)[number]): boolean => {
        const status = api.get('pods', NS, name)?.status;
        const expect = spec.expect;
        if (status?.phase !== expect.status) return false;
        if (expect.status === 'Running') return true;
        // The Event too: under load it is written a while after the status.
        if (!eventsOf(api, name).some((e) => e.reason === expect.event)) return false;
        if (expect.status === 'Failed') return status.reason === expect.reason;
        return (status.containerStatuses ?? []).every(
          (c) => c.state?.waiting?.reason === expect.waiting,
        );
      };
      const unsettled = (): string =>
        BAD_POD_SPECS.filter((s) => !settled(s.pod.metadata?.name ?? '', s))
          .map((s) => {
            const status = api.get('pods', NS, s.pod.metadata?.name ?? '')?.status ?? {};
            return `${s.name} (${JSON.stringify(status).slice(0, 300)})`;
          })
          .join(', ');
      await waitFor(() => unsettled() === '', { ...WAIT, what: 'every bad pod settled' }).catch(
        (err: unknown) => {
          throw new Error(`not settled: ${unsettled()}`, { cause: err });
        },
      );
      // Watched for a while longer: nothing is reported again per tick or per resync.
      const counts = new Map(
        BAD_POD_SPECS.map((s) => [s.name, eventsOf(api, s.pod.metadata?.name ?? '')]),
      );
      const watchedFrom = performance.now();
      await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
      // On a loaded machine the timer fires late: bound the growth by the time really watched.
      const watchedMs = performance.now() - watchedFrom;

      for (const spec of BAD_POD_SPECS) {
        const name = spec.pod.metadata?.name ?? '';
        const what = spec.name;
        assert.ok(
          settled(name, spec),
          `${what}: status ${JSON.stringify(api.get('pods', NS, name)?.status)}`,
        );
        const all = eventsOf(api, name);
        const expect = spec.expect;
        if (expect.status === 'Running') {
          assert.equal(provider.creates.get(name), 1, `${what}: created once`);
          const failures = all.filter((e) => FAILURE_REASONS.has(e.reason ?? ''));
          assert.deepEqual(failures, [], `${what}: no failure Events`);
          continue;
        }
        assert.equal(provider.creates.get(name), undefined, `${what}: never handed over`);
        const matching = all.filter((e) => e.reason === expect.event);
        assert.equal(matching.length, 1, `${what}: one ${expect.event} Event`);
        const event = matching[0];
        assert.ok(event?.message, `${what}: the Event says why`);
        const before = counts.get(spec.name)?.find((e) => e.reason === expect.event)?.count ?? 0;
        if (expect.status === 'Pending' && expect.retried) {
          // Retried with back-off (capped at 400 ms here) and on each resync (200 ms): at most
          // the resync and one back-off retry per resync period, never one per poll (50 ms). Two
          // more for the edges of the window: the counts are read a little before and after it.
          const grew = (event.count ?? 1) - before;
          const most = 2 * Math.ceil(watchedMs / 200) + 3;
          assert.ok(
            grew <= most,
            `${what}: count grew by ${String(grew)} in ${watchedMs.toFixed(0)} ms (at most ${String(most)})`,
          );
        } else {
          assert.equal(event.count ?? 1, 1, `${what}: reported once`);
        }
        if (expect.status === 'Pending') {
          const status = api.get('pods', NS, name)?.status;
          const message =
            status?.containerStatuses?.[0]?.state?.waiting?.message ?? status?.message;
          assert.ok(message && message.length <= 2048, `${what}: a short waiting message`);
          if (!expect.retried) assert.equal(status?.reason, expect.event, `${what}: pod reason`);
        }
      }
      // Still working: a pod created after all of them runs.
      api.create('pods', { ...good, metadata: { namespace: NS, name: 'good-at-the-end' } });
      await waitFor(() => api.get('pods', NS, 'good-at-the-end')?.status?.phase === 'Running', {
        ...WAIT,
        what: 'the last good pod Running',
      });
      // And every one of them can be deleted, refused or not.
      for (const spec of BAD_POD_SPECS) api.deletePod(NS, spec.pod.metadata?.name ?? '', 0);
      await waitFor(
        () => BAD_POD_SPECS.every((s) => !api.get('pods', NS, s.pod.metadata?.name ?? '')),
        { ...WAIT, what: 'every bad pod deleted' },
      );
    });
  });
}
