/**
 * The engine driven by a runtime that runs no process at all: what a provider must give the
 * probe engine (the pod IP, an exec in a container) is enough to probe, restart and report.
 */
import type { V1Container, V1Pod, V1Probe } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  ProbeManager,
  type ExecOptions,
  type ExecResult,
  type ProbeRestart,
  type ProbeRuntime,
} from '../../../src/probes/index.js';
import { silentLogger, type Logger } from '../../../src/log.js';
import type { PodEvent } from '../../../src/provider.js';
import { waitFor } from '../../helpers/wait.js';
import { HOST, tcpFixture } from './fixtures.js';

/** One probe "second" is this many milliseconds here. */
const MS = 50;
const fast = { intervalMs: 5, timeoutMs: 10_000 };

interface Call {
  readonly container: string;
  readonly command: readonly string[];
  readonly timeoutMs: number;
}

/**
 * A runtime whose containers are entries of `healthy`: an exec succeeds while its container is
 * healthy. Every call is recorded.
 */
class FakeRuntime implements ProbeRuntime {
  readonly podIP: string;
  readonly healthy = new Map<string, boolean>();
  readonly calls: Call[] = [];

  constructor(podIP = HOST) {
    this.podIP = podIP;
  }

  exec(container: string, command: readonly string[], options: ExecOptions): Promise<ExecResult> {
    this.calls.push({ container, command, timeoutMs: options.timeoutMs });
    const ok = this.healthy.get(container);
    if (ok === undefined) return Promise.reject(new Error(`no container ${container}`));
    return Promise.resolve(ok ? { exitCode: 0, output: 'ok' } : { exitCode: 1, output: 'sick' });
  }

  count(container: string): number {
    return this.calls.filter((c) => c.container === container).length;
  }
}

interface Harness {
  readonly manager: ProbeManager;
  readonly changes: string[];
  readonly events: string[];
  readonly restarts: ProbeRestart[];
}

const managers: ProbeManager[] = [];

function harness(): Harness {
  const changes: string[] = [];
  const events: string[] = [];
  const restarts: ProbeRestart[] = [];
  const manager = new ProbeManager({
    msPerSecond: MS,
    onChange: (pod, container) => changes.push(`${pod.metadata?.name ?? ''}/${container}`),
    onEvent: (_pod: V1Pod, e: PodEvent) => events.push(`${e.type} ${e.reason}: ${e.message}`),
    onRestartNeeded: (r) => restarts.push(r),
  });
  managers.push(manager);
  return { manager, changes, events, restarts };
}

const execProbe = (extra: V1Probe = {}): V1Probe => ({
  periodSeconds: 1,
  timeoutSeconds: 30,
  exec: { command: ['check', '$(MODE)'] },
  ...extra,
});

function podOf(containers: V1Container[], grace?: number): V1Pod {
  return {
    metadata: { name: 'web', namespace: 'default', uid: 'uid-1' },
    spec: {
      containers,
      ...(grace === undefined ? {} : { terminationGracePeriodSeconds: grace }),
    },
  };
}

const start = (name: string, instance: string | number) => ({
  name,
  instance,
  startedAt: new Date(),
});

describe('ProbeManager with a runtime of its own', () => {
  after(() => Promise.all(managers.map((m) => m.close())));

  test('readiness follows the exec result; the command is expanded and carries the timeout', async () => {
    const { manager, changes } = harness();
    const runtime = new FakeRuntime();
    const pod = podOf([
      { name: 'app', env: [{ name: 'MODE', value: 'ready' }], readinessProbe: execProbe() },
      { name: 'plain' },
    ]);
    runtime.healthy.set('app', false);
    manager.sync(pod, runtime, [start('app', 'c1'), start('plain', 'c2')]);
    assert.deepEqual(manager.state(pod, 'app', 'c1'), { started: true, ready: false });
    assert.equal(manager.state(pod, 'plain', 'c2'), undefined);

    await waitFor(() => runtime.count('app') >= 2, fast);
    assert.deepEqual(manager.state(pod, 'app', 'c1'), { started: true, ready: false });
    runtime.healthy.set('app', true);
    await waitFor(() => manager.state(pod, 'app', 'c1')?.ready, { ...fast, what: 'ready' });
    assert.deepEqual(changes, ['web/app']);
    assert.deepEqual(runtime.calls[0], {
      container: 'app',
      command: ['check', 'ready'],
      timeoutMs: 30 * MS,
    });
    // Another start is not ready until its own prober says so.
    assert.deepEqual(manager.state(pod, 'app', 'c9'), { started: true, ready: false });
    manager.forget('uid-1');
  });

  test('a failed liveness probe records Killing and asks for a restart of that start', async () => {
    const { manager, events, restarts } = harness();
    const runtime = new FakeRuntime();
    const pod = podOf([{ name: 'app', livenessProbe: execProbe({ failureThreshold: 2 }) }], 12);
    runtime.healthy.set('app', false);
    manager.sync(pod, runtime, [start('app', 1)]);
    await waitFor(() => restarts.length === 1, fast);
    const message = 'Container app failed liveness probe, will be restarted';
    assert.equal(restarts[0]?.pod, pod);
    assert.deepEqual(
      { ...restarts[0], pod: undefined },
      {
        pod: undefined,
        container: 'app',
        instance: 1,
        reason: 'LivenessProbe',
        message,
        gracePeriodSeconds: 12,
      },
    );
    assert.deepEqual(events, [
      'Warning Unhealthy: Liveness probe failed: sick',
      'Warning Unhealthy: Liveness probe failed: sick',
      `Normal Killing: ${message}`,
    ]);
    // On hold until the provider reports another start, which gets a new prober.
    const calls = runtime.count('app');
    await delay(3 * MS);
    assert.equal(runtime.count('app'), calls);
    runtime.healthy.set('app', true);
    manager.sync(pod, runtime, [start('app', 2)]);
    await waitFor(() => runtime.count('app') > calls, fast);
    assert.equal(restarts.length, 1);
    manager.forget('uid-1');
  });

  test("the probe's own grace period wins over the pod's; without either it is 30 s", async () => {
    const { manager, restarts } = harness();
    const runtime = new FakeRuntime();
    runtime.healthy.set('a', false);
    runtime.healthy.set('b', false);
    const pod = podOf([
      {
        name: 'a',
        startupProbe: execProbe({ failureThreshold: 1, terminationGracePeriodSeconds: 3 }),
      },
      { name: 'b', livenessProbe: execProbe({ failureThreshold: 1 }) },
    ]);
    manager.sync(pod, runtime, [start('a', 1), start('b', 1)]);
    await waitFor(() => restarts.length === 2, fast);
    const grace = Object.fromEntries(restarts.map((r) => [r.container, r.gracePeriodSeconds]));
    assert.deepEqual(grace, { a: 3, b: 30 });
    assert.equal(restarts.find((r) => r.container === 'a')?.reason, 'StartupProbe');
    manager.forget('uid-1');
  });

  test('a container no longer running is not probed; terminating stops liveness only', async () => {
    const { manager, restarts } = harness();
    const runtime = new FakeRuntime();
    runtime.healthy.set('gone', true);
    runtime.healthy.set('app', true);
    const pod = podOf([
      { name: 'gone', readinessProbe: execProbe() },
      {
        name: 'app',
        readinessProbe: execProbe(),
        livenessProbe: { ...execProbe(), exec: { command: ['live'] } },
      },
    ]);
    manager.sync(pod, runtime, [start('gone', 1), start('app', 1)]);
    await waitFor(() => runtime.count('gone') >= 1 && runtime.count('app') >= 2, fast);

    manager.sync(pod, runtime, [start('app', 1)], true);
    runtime.healthy.set('app', false);
    const gone = runtime.count('gone');
    const lives = (): number => runtime.calls.filter((c) => c.command[0] === 'live').length;
    const lived = lives();
    await waitFor(() => manager.state(pod, 'app', 1)?.ready === false, fast);
    assert.equal(runtime.count('gone'), gone);
    assert.equal(lives(), lived);
    assert.deepEqual(restarts, []);
    assert.deepEqual(manager.state(pod, 'gone', 1), { started: true, ready: false });
    manager.forget('uid-1');
  });

  test("a tcpSocket probe without a host goes to the runtime's pod IP", async (t) => {
    const tcp = await tcpFixture();
    t.after(() => tcp.close());
    const { manager } = harness();
    const pod = podOf([
      { name: 'db', readinessProbe: { periodSeconds: 1, tcpSocket: { port: tcp.port } } },
    ]);
    manager.sync(pod, new FakeRuntime(HOST), [start('db', 'x')]);
    await waitFor(() => manager.state(pod, 'db', 'x')?.ready, fast);
    assert.ok(tcp.accepted() >= 1);
    manager.forget('uid-1');
  });

  test('invalid probes and a runtime without exec leave the container unready, quietly', async () => {
    const errors: string[] = [];
    const logger: Logger = {
      ...silentLogger,
      error: (o: object | string, message?: string) => {
        errors.push(typeof o === 'string' ? o : (message ?? ''));
      },
      child: () => logger,
    };
    const manager = new ProbeManager({ logger, msPerSecond: MS });
    managers.push(manager);
    const pod = podOf([
      { name: 'bad', livenessProbe: { successThreshold: 2, tcpSocket: { port: 1 } } },
      { name: 'exec', readinessProbe: execProbe() },
    ]);
    const noExec: ProbeRuntime = { podIP: HOST };
    for (let i = 0; i < 3; i++) manager.sync(pod, noExec, [start('bad', 1), start('exec', 1)]);
    assert.deepEqual(manager.state(pod, 'bad', 1), { started: true, ready: false });
    assert.deepEqual(manager.state(pod, 'exec', 1), { started: true, ready: false });
    // Once per start, not once per sync.
    assert.deepEqual(errors, ['cannot probe the container', 'cannot probe the container']);
    await manager.close();
  });
});
