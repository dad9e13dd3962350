import type { TestContext } from 'node:test';
import type { V1Pod, V1PodSpec } from '../../src/wire.js';
import { EventRecorder } from '../../src/kube/events.js';
import { PodController, type PodControllerOptions } from '../../src/pods/pod-controller.js';
import type { Provider } from '../../src/provider.js';
import type { FakeApi } from './fake-api.js';
import { waitFor, type WaitOptions } from './wait.js';

/** A PodController running against a FakeApi, with the EventRecorder it writes to. */
export interface RunningPodController {
  readonly controller: PodController;
  readonly events: EventRecorder;
  /** Aborts the run, waits for it to return and closes `events`; once, however often called. */
  readonly stop: () => Promise<void>;
}

/** What `runPodController` takes: `nodeName` is required, the rest override its defaults. */
export type RunPodControllerOptions = Partial<Omit<PodControllerOptions, 'client' | 'provider'>> & {
  readonly nodeName: string;
};

/**
 * Runs a PodController of `provider` against `api` until the test ends (or `stop`), and
 * resolves once it is ready (or its run ended early). Defaults, meant for tests: events with
 * no rate limit, `pollIntervalMs: 50`, `fullResyncPeriodMs: 0` (off), `maxBackoffMs: 400`;
 * pass a key as `undefined` to get the controller's own default instead.
 */
export async function runPodController(
  t: TestContext,
  api: FakeApi,
  provider: Provider,
  options: RunPodControllerOptions,
): Promise<RunningPodController> {
  const events = new EventRecorder({ client: api.client, host: options.nodeName, qps: 0 });
  const controller = new PodController({
    client: api.client,
    provider,
    events,
    pollIntervalMs: 50,
    fullResyncPeriodMs: 0,
    maxBackoffMs: 400,
    ...options,
  });
  const abort = new AbortController();
  const running = controller.run(abort.signal);
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> =>
    (stopped ??= (async () => {
      abort.abort();
      await running;
      events.close();
    })());
  t.after(stop);
  await Promise.race([controller.whenReady(), running]);
  return { controller, events, stop };
}

/**
 * A Pending pod bound to `node`: one `busybox:1` container named `app`, `restartPolicy:
 * Always`, a 30 s grace period; `spec` overrides any of these.
 */
export function testPod(
  namespace: string,
  node: string,
  name: string,
  spec: Partial<V1PodSpec> = {},
): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { namespace, name },
    spec: {
      nodeName: node,
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      containers: [{ name: 'app', image: 'busybox:1' }],
      ...spec,
    },
    status: { phase: 'Pending' },
  };
}

/** Resolves with the pod `namespace/name` as the API has it once its phase is `phase`. */
export function waitPodPhase(
  api: FakeApi,
  namespace: string,
  name: string,
  phase: string,
  wait: WaitOptions,
): Promise<V1Pod> {
  return waitFor(
    () => {
      const pod = api.get('pods', namespace, name);
      return pod?.status?.phase === phase ? pod : false;
    },
    { ...wait, what: `pod ${name} ${phase}` },
  );
}
