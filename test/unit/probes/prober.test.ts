import type { V1Container, V1Probe } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { VirtualKubeletError } from '../../../src/errors.js';
import {
  ContainerProber,
  type ContainerProberOptions,
  type ProbeState,
  type RestartReason,
} from '../../../src/probes/index.js';
import { waitFor } from '../../helpers/wait.js';
import {
  HOST,
  alive,
  closedPort,
  execFixture,
  grpcFixture,
  httpFixture,
  tcpFixture,
  type HttpFixture,
  type ProbeExec,
} from './fixtures.js';

/** One probe "second" is this many milliseconds here, so periods of 1 s take 100 ms. */
const MS = 100;
const fast = { intervalMs: 10, timeoutMs: 10_000 };

interface Recorder {
  readonly prober: ContainerProber;
  /** Each change, with what `counted()` returned at that moment. */
  readonly changes: (ProbeState & { n: number })[];
  /** `<reason>: <message>` of each event. */
  readonly events: string[];
  readonly restarts: [RestartReason, string, number | undefined][];
}

const probers: ContainerProber[] = [];

/** A started prober of `container` that records what it reports; stopped after each suite. */
/** Options of the prober, and of its runtime (the pod IP is HOST unless given). */
type Extra = Partial<Omit<ContainerProberOptions, 'runtime'>> & {
  readonly podIP?: string;
  readonly exec?: ProbeExec;
};

function record(
  container: V1Container,
  { podIP = HOST, exec, ...options }: Extra = {},
  counted: () => number = () => 0,
): Recorder {
  const changes: Recorder['changes'] = [];
  const events: string[] = [];
  const restarts: Recorder['restarts'] = [];
  const prober = new ContainerProber({
    container,
    runtime: { podIP, ...(exec ? { exec } : {}) },
    msPerSecond: MS,
    onChange: (s) => changes.push({ ...s, n: counted() }),
    onEvent: (type, reason, message) => {
      assert.equal(type, 'Warning');
      events.push(`${reason}: ${message}`);
    },
    onRestartNeeded: (...args) => restarts.push(args),
    ...options,
  });
  probers.push(prober);
  prober.start();
  return { prober, changes, events, restarts };
}

/** A probe every `seconds`, with a timeout long enough not to fire on a busy machine. */
const every = (seconds: number, extra: V1Probe = {}): V1Probe => ({
  periodSeconds: seconds,
  timeoutSeconds: 30,
  ...extra,
});

describe('ContainerProber', () => {
  let http: HttpFixture;
  before(async () => {
    http = await httpFixture();
  });
  after(async () => {
    await Promise.all(probers.map((p) => p.stop()));
    await http.close();
  });

  test('readiness starts false, turns true on success and false after failureThreshold failures', async () => {
    http.statuses.set('r1', [200, 500, 200, 500, 500, 200]);
    const { prober, changes, events } = record(
      {
        name: 'main',
        readinessProbe: every(1, {
          failureThreshold: 2,
          httpGet: { port: http.port, path: '/dyn/r1' },
        }),
      },
      {},
      () => http.count('/dyn/r1'),
    );
    assert.deepEqual(prober.state, { started: true, ready: false });
    await waitFor(() => changes.length === 3, { ...fast, what: 'three changes' });
    // A single failure (request 2) does not count; two in a row (4 and 5) do; one success heals.
    assert.deepEqual(changes, [
      { started: true, ready: true, n: 1 },
      { started: true, ready: false, n: 5 },
      { started: true, ready: true, n: 6 },
    ]);
    const failed = 'Unhealthy: Readiness probe failed: HTTP probe failed with statuscode: 500';
    assert.deepEqual(events, [failed, failed, failed]);
    assert.equal(
      prober.lastFailure('readiness'),
      'Readiness probe failed: HTTP probe failed with statuscode: 500',
    );
    assert.equal(prober.lastFailure(), prober.lastFailure('readiness'));
    assert.equal(prober.lastFailure('liveness'), undefined);
    await prober.stop();
  });

  test('readiness successThreshold needs that many successes in a row', async () => {
    http.statuses.set('r2', [200, 500, 200, 200]);
    const { prober, changes } = record(
      {
        name: 'main',
        readinessProbe: every(1, {
          successThreshold: 2,
          failureThreshold: 1,
          httpGet: { port: http.port, path: '/dyn/r2' },
        }),
      },
      {},
      () => http.count('/dyn/r2'),
    );
    await waitFor(() => changes.length === 1, fast);
    assert.deepEqual(changes, [{ started: true, ready: true, n: 4 }]);
    await prober.stop();
  });

  test('liveness asks for a restart after failureThreshold consecutive failures, once', async () => {
    http.statuses.set('l1', [500, 500, 200, 500, 500, 500, 200]);
    const { prober, changes, events, restarts } = record({
      name: 'main',
      livenessProbe: every(1, {
        failureThreshold: 3,
        terminationGracePeriodSeconds: 9,
        httpGet: { port: http.port, path: '/dyn/l1' },
      }),
    });
    assert.deepEqual(prober.state, { started: true, ready: true });
    await waitFor(() => restarts.length === 1, fast);
    assert.deepEqual(restarts, [
      ['LivenessProbe', 'Container main failed liveness probe, will be restarted', 9],
    ]);
    // Two failures, a success that resets the count, then three failures.
    assert.equal(http.count('/dyn/l1'), 6);
    assert.equal(events.length, 5);
    assert.ok(events.every((e) => e.startsWith('Unhealthy: Liveness probe failed: ')));
    // The probe is on hold until the container is replaced: no more requests, no more calls.
    await delay(4 * MS);
    assert.equal(http.count('/dyn/l1'), 6);
    assert.equal(restarts.length, 1);
    assert.deepEqual(changes, []);
    await prober.stop();
  });

  test('the startup probe gates readiness and liveness until it succeeds', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'vk-probe-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const marker = join(dir, 'started');
    const fixture = execFixture();
    const { prober, changes } = record(
      {
        name: 'main',
        startupProbe: every(1, {
          failureThreshold: 1000,
          exec: { command: ['sh', '-c', `test -e '${marker}'`] },
        }),
        // A period far beyond the test's: readiness runs at once when startup succeeds.
        readinessProbe: every(100, { httpGet: { port: http.port, path: '/dyn/ready' } }),
        livenessProbe: every(1, { httpGet: { port: http.port, path: '/dyn/live' } }),
      },
      { exec: fixture.exec },
    );
    assert.deepEqual(prober.state, { started: false, ready: false });
    await waitFor(() => fixture.pids.length >= 3, fast);
    assert.equal(http.count('/dyn/ready'), 0);
    assert.equal(http.count('/dyn/live'), 0);
    assert.deepEqual(changes, []);

    await writeFile(marker, '');
    await waitFor(() => changes.length === 2, { ...fast, what: 'started, then ready' });
    assert.deepEqual(
      changes.map(({ started, ready }) => ({ started, ready })),
      [
        { started: true, ready: false },
        { started: true, ready: true },
      ],
    );
    await waitFor(() => http.count('/dyn/live') >= 2, fast);
    // The startup probe is done for good.
    const startups = fixture.pids.length;
    await delay(3 * MS);
    assert.equal(fixture.pids.length, startups);
    assert.equal(http.count('/dyn/ready'), 1);
    await prober.stop();
  });

  test('a startup probe that keeps failing asks for a restart; readiness never runs', async () => {
    const fixture = execFixture();
    const { prober, events, restarts } = record(
      {
        name: 'app',
        startupProbe: every(1, {
          failureThreshold: 3,
          terminationGracePeriodSeconds: 7,
          exec: { command: ['sh', '-c', 'echo not yet; exit 1'] },
        }),
        readinessProbe: every(1, { httpGet: { port: http.port, path: '/dyn/never' } }),
      },
      { exec: fixture.exec },
    );
    await waitFor(() => restarts.length === 1, fast);
    assert.deepEqual(restarts, [
      ['StartupProbe', 'Container app failed startup probe, will be restarted', 7],
    ]);
    assert.equal(fixture.pids.length, 3);
    assert.deepEqual(events, Array(3).fill('Unhealthy: Startup probe failed: not yet\n'));
    assert.equal(http.count('/dyn/never'), 0);
    assert.deepEqual(prober.state, { started: false, ready: false });
    await prober.stop();
  });

  test('a timeout counts as a failure', async () => {
    const { events, restarts, prober } = record({
      name: 'main',
      livenessProbe: every(2, {
        timeoutSeconds: 1,
        failureThreshold: 2,
        httpGet: { port: http.port, path: '/slow' },
      }),
    });
    await waitFor(() => restarts.length === 1, fast);
    assert.equal(http.count('/slow'), 2);
    assert.equal(
      events[0],
      `Unhealthy: Liveness probe failed: Get "${http.url}/slow": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
    );
    await prober.stop();
  });

  test('an exec probe that times out fails and its command is killed', async () => {
    const fixture = execFixture();
    const { prober, events } = record(
      {
        name: 'main',
        readinessProbe: every(3, { timeoutSeconds: 1, exec: { command: ['sleep', '30'] } }),
      },
      { exec: fixture.exec },
    );
    await waitFor(() => events.length === 1, fast);
    assert.equal(events[0], 'Unhealthy: Readiness probe failed: command "sleep 30" timed out');
    const pid = fixture.pids[0];
    assert.ok(pid !== undefined);
    await waitFor(() => !alive(pid), fast);
    assert.deepEqual(prober.state, { started: true, ready: false });
    await prober.stop();
  });

  test('initialDelaySeconds counts from the container start', async () => {
    const startedAt = new Date();
    const { prober, changes } = record(
      {
        name: 'main',
        readinessProbe: every(1, {
          initialDelaySeconds: 3,
          httpGet: { port: http.port, path: '/dyn/delayed' },
        }),
      },
      { startedAt },
    );
    await waitFor(() => changes.length === 1, fast);
    const first = http.requests.find((r) => r.path === '/dyn/delayed');
    assert.ok(first);
    assert.ok(
      first.at - startedAt.getTime() >= 3 * MS,
      `probed after ${String(first.at - startedAt.getTime())} ms`,
    );
    await prober.stop();

    // A container that started long ago is probed on the first tick.
    const old = record(
      {
        name: 'main',
        // Only the tick at start() comes before the test's timeout.
        readinessProbe: every(1000, {
          initialDelaySeconds: 3,
          httpGet: { port: http.port, path: '/dyn/old' },
        }),
      },
      { startedAt: new Date(Date.now() - 60_000) },
    );
    await waitFor(() => old.changes.length === 1, fast);
    await old.prober.stop();
  });

  test('an attempt that errors is retried, reported and not counted', async () => {
    let calls = 0;
    const exec: ProbeExec = () => {
      calls++;
      return Promise.reject(new Error('no such container'));
    };
    const { prober, events, restarts } = record(
      {
        name: 'main',
        livenessProbe: every(1, { failureThreshold: 1, exec: { command: ['true'] } }),
      },
      { exec },
    );
    await waitFor(() => events.length >= 2, fast);
    // Three tries per tick, one event per tick.
    assert.ok(calls >= 6);
    assert.equal(
      events[0],
      'Unhealthy: Liveness probe errored and resulted in unknown state: no such container',
    );
    assert.deepEqual(restarts, []);
    await prober.stop();
  });

  test('a redirect to another host is a success with a ProbeWarning event', async () => {
    const to = encodeURIComponent(`http://localhost:${String(http.port)}/status/500`);
    const { prober, changes, events } = record({
      name: 'main',
      readinessProbe: every(1, { httpGet: { port: http.port, path: `/redirect?to=${to}` } }),
    });
    await waitFor(() => changes.length === 1, fast);
    assert.equal(changes[0]?.ready, true);
    assert.equal(
      events[0],
      'ProbeWarning: Readiness probe warning: Probe terminated redirects, Response body: moved',
    );
    await prober.stop();
  });

  test('grpc readiness follows the serving status', async (t) => {
    const grpc = await grpcFixture();
    t.after(() => grpc.close());
    grpc.services.set('api', 1);
    const { prober, changes, events } = record({
      name: 'main',
      readinessProbe: every(1, { failureThreshold: 1, grpc: { port: grpc.port, service: 'api' } }),
    });
    await waitFor(() => changes.length === 1, fast);
    grpc.services.set('api', 2);
    await waitFor(() => changes.length === 2, fast);
    assert.deepEqual(
      changes.map((c) => c.ready),
      [true, false],
    );
    assert.equal(
      events.at(-1),
      'Unhealthy: Readiness probe failed: service unhealthy (responded with "NOT_SERVING")',
    );
    await prober.stop();
  });

  test('tcpSocket: an open port is ready, a closed one fails liveness', async (t) => {
    const tcp = await tcpFixture();
    t.after(() => tcp.close());
    const port = await closedPort();
    const { prober, changes, events, restarts } = record({
      name: 'main',
      ports: [{ name: 'svc', containerPort: tcp.port }],
      readinessProbe: every(1, { tcpSocket: { port: 'svc' } }),
      livenessProbe: every(1, { failureThreshold: 2, tcpSocket: { port } }),
    });
    await waitFor(() => restarts.length === 1 && changes.length === 1, fast);
    assert.equal(changes[0]?.ready, true);
    assert.equal(
      events[0],
      `Unhealthy: Liveness probe failed: dial tcp ${HOST}:${String(port)}: connect: connection refused`,
    );
    await prober.stop();
  });

  test('markTerminating stops liveness but not readiness', async () => {
    const port = await closedPort();
    const { prober, restarts } = record({
      name: 'main',
      readinessProbe: every(1, { httpGet: { port: http.port, path: '/dyn/term' } }),
      livenessProbe: every(1, { failureThreshold: 2, initialDelaySeconds: 1, tcpSocket: { port } }),
    });
    prober.markTerminating();
    const seen = http.count('/dyn/term');
    await waitFor(() => http.count('/dyn/term') >= seen + 3, fast);
    assert.deepEqual(restarts, []);
    await prober.stop();
  });

  test('a period longer than a timer can wait does not make the probe spin', async () => {
    const { prober } = record(
      {
        name: 'main',
        readinessProbe: every(3_000_000, { httpGet: { port: http.port, path: '/dyn/long' } }),
      },
      { msPerSecond: 1000 },
    );
    await waitFor(() => http.count('/dyn/long') === 1, fast);
    await delay(3 * MS);
    assert.equal(http.count('/dyn/long'), 1);
    await prober.stop();
  });

  test('stop() cancels probes in flight and leaves nothing behind', async () => {
    const timers = (): number =>
      process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const baseline = timers();
    const slow = http.count('/slow') + 1;
    const fixture = execFixture();
    const { prober, changes, events, restarts } = record(
      {
        name: 'main',
        readinessProbe: every(1, {
          timeoutSeconds: 100,
          httpGet: { port: http.port, path: '/slow' },
        }),
        livenessProbe: every(1, { timeoutSeconds: 100, exec: { command: ['sleep', '30'] } }),
      },
      { exec: fixture.exec },
    );
    await waitFor(() => http.count('/slow') === slow && fixture.running() === 1, fast);
    const started = Date.now();
    await prober.stop();
    assert.ok(Date.now() - started < 3000, 'stop() waited for the probes in flight');
    const pid = fixture.pids[0];
    assert.ok(pid !== undefined);
    await waitFor(() => http.openSockets() === 0 && fixture.running() === 0 && !alive(pid), fast);
    assert.equal(timers(), baseline);
    await delay(3 * MS);
    assert.equal(http.count('/slow'), slow);
    assert.equal(fixture.pids.length, 1);
    assert.deepEqual([changes, events, restarts], [[], [], []]);
    prober.start(); // a stopped prober stays stopped
    await delay(2 * MS);
    assert.equal(http.count('/slow'), slow);
  });

  test('the signal option stops probing as stop() does', async () => {
    const controller = new AbortController();
    const { prober } = record(
      {
        name: 'main',
        readinessProbe: every(1, { httpGet: { port: http.port, path: '/dyn/signal' } }),
      },
      { signal: controller.signal },
    );
    await waitFor(() => http.count('/dyn/signal') >= 2, fast);
    controller.abort();
    await prober.stop();
    const count = http.count('/dyn/signal');
    await delay(3 * MS);
    assert.equal(http.count('/dyn/signal'), count);
  });

  test('the constructor rejects invalid probes and exec probes without an exec', () => {
    assert.throws(
      () =>
        new ContainerProber({
          container: {
            name: 'main',
            livenessProbe: { successThreshold: 2, tcpSocket: { port: 80 } },
          },
          runtime: { podIP: HOST },
        }),
      (err: unknown) =>
        err instanceof VirtualKubeletError &&
        err.code === 'InvalidInput' &&
        err.message ===
          'container main: livenessProbe.successThreshold: Invalid value: 2: must be 1',
    );
    assert.throws(
      () =>
        new ContainerProber({
          container: { name: 'main', readinessProbe: { exec: { command: ['true'] } } },
          runtime: { podIP: HOST },
        }),
      /an exec probe needs a runtime with exec/,
    );
  });
});
