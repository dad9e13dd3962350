/**
 * The process provider against specs that used to stop it: NUL bytes (spawn throws), names
 * longer than a hostname, an unreadable state file, and a preStop httpGet with a named port
 * and a redirect to another host.
 */
import type { V1Pod, V1PodSpec } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync, statSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { errorCode } from '../../../../src/errors.js';
import type { Logger } from '../../../../src/log.js';
import { podHostname } from '../../../../src/kubelet/hostname.js';
import { ProcessProvider, type ProcessConfig } from '../../../../src/providers/process/index.js';
import { isAlive, processRef } from '../../../../src/providers/process/proc.js';
import { notedProcesses, podDirName } from '../../../../src/providers/process/state.js';
import { processFixture } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;

/** A logger that keeps the messages of error lines. */
function errorLog(): { logger: Logger; errors: string[] } {
  const errors: string[] = [];
  const logger: Logger = {
    level: 'info',
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (_obj: unknown, msg?: string) => {
      errors.push(msg ?? '');
    },
    fatal: () => undefined,
    trace: () => undefined,
    child: () => logger,
  } as unknown as Logger;
  return { logger, errors };
}

function setup(
  t: TestContext,
  config: ProcessConfig = {},
  logger?: Logger,
): { provider: ProcessProvider; make: () => ProcessProvider; dir: string } {
  return processFixture(t, 'bad', {
    config: { monitorIntervalMs: 50, network: 'host', ...config },
    ...(logger ? { logger } : {}),
  });
}

function pod(name: string, spec: Partial<V1PodSpec>): V1Pod {
  return {
    metadata: { namespace: 'unit', name, uid: randomUUID() },
    spec: { terminationGracePeriodSeconds: 1, containers: [], ...spec },
  };
}

const podDir = (stateDir: string, p: V1Pod): string => join(stateDir, 'pods', podDirName(p));

test('a NUL byte in env, args or working directory is refused with InvalidInput', async (t) => {
  const { provider } = setup(t);
  const cases: Partial<V1PodSpec['containers'][number]>[] = [
    { env: [{ name: 'X', value: 'a\0b' }] },
    { args: ['a\0b'] },
    { command: ['sleep\0', '1'] },
    { workingDir: '/\0' },
  ];
  for (const [i, extra] of cases.entries()) {
    const p = pod(`nul-${String(i)}`, {
      containers: [{ name: 'app', image: 'busybox', command: ['sleep', '60'], ...extra }],
    });
    await assert.rejects(provider.createPod(p, signal), (err: unknown) => {
      assert.equal(errorCode(err), 'InvalidInput');
      assert.match(String(err), /NUL/);
      return true;
    });
  }
  assert.deepEqual(await provider.getPods(signal), []);
});

test('an environment string longer than execve takes is refused with InvalidInput', async (t) => {
  const { provider } = setup(t);
  const p = pod('big-env', {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '60'],
        env: [{ name: 'BIG', value: 'x'.repeat(1024 * 1024) }],
      },
    ],
  });
  await assert.rejects(provider.createPod(p, signal), (err: unknown) => {
    assert.equal(errorCode(err), 'InvalidInput');
    assert.match(String(err), /env\[0\]: Too long/);
    return true;
  });
});

test('a spawn that throws ends the run as a StartError, logged once, not every tick', async (t) => {
  const { logger, errors } = errorLog();
  const { provider } = setup(t, { isolation: 'none', cgroups: 'none' }, logger);
  const p = pod('nul-later', {
    restartPolicy: 'Always',
    containers: [{ name: 'app', image: 'busybox', command: ['sh', '-c', 'exit 1'] }],
  });
  await provider.createPod(p, signal);
  // An update (which is not checked again) brings the NUL byte to the next restart.
  const updated = structuredClone(p);
  const c = updated.spec?.containers[0];
  if (c) c.env = [{ name: 'X', value: 'from-a-secret\0b' }];
  await provider.updatePod(updated, signal);
  const state = await waitFor(
    async () => {
      const s = (await provider.getPodStatus('unit', 'nul-later', signal))?.containerStatuses?.[0];
      const term = s?.state?.terminated ?? s?.lastState?.terminated;
      return term?.reason === 'StartError' ? term : undefined;
    },
    { what: 'a StartError', timeoutMs: 20_000 },
  );
  assert.match(state.message ?? '', /cannot start the container process: .*null bytes/);
  // Node's spawn error quotes the refused value; the status never does.
  assert.doesNotMatch(state.message ?? '', /from-a-secret/);
  // Several monitor ticks later nothing was logged as an error per tick.
  await new Promise((resolve) => setTimeout(resolve, 500));
  assert.deepEqual(
    errors.filter((e) => e === 'pod check failed'),
    [],
  );
});

test('the hostname of a pod named with more than 63 characters is cut as the kubelet cuts it', () => {
  const name = `${'a'.repeat(62)}-bcd`;
  assert.equal(podHostname({ metadata: { name } }), 'a'.repeat(62));
  assert.equal(podHostname({ metadata: { name: `${'a'.repeat(62)}.x` } }), 'a'.repeat(62));
  assert.equal(podHostname({ metadata: { name: 'short' } }), 'short');
  assert.equal(
    podHostname({ metadata: { name: 'x' }, spec: { hostname: 'h', containers: [] } }),
    'h',
  );
  assert.equal(podHostname({ metadata: { name: 'a'.repeat(253) } }).length, 63);
});

test('a pod named with 253 characters starts, its hostname cut to 63', async (t) => {
  const { provider } = setup(t);
  const name = `${'n'.repeat(200)}.${'m'.repeat(52)}`;
  assert.equal(name.length, 253);
  await provider.createPod(
    pod(name, {
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sh', '-c', 'echo "$HOSTNAME"; hostname; sleep 60'],
        },
      ],
    }),
    signal,
  );
  const logs = await waitFor(
    async () => {
      const l = await text(
        await provider.getContainerLogs(
          'unit',
          name,
          'app',
          { follow: false, previous: false, timestamps: false },
          signal,
        ),
      );
      return l.split('\n').length >= 2 && l.endsWith('\n') && l.split('\n').length >= 3
        ? l
        : undefined;
    },
    { what: 'the hostname in the log', timeoutMs: 20_000 },
  );
  const cut = 'n'.repeat(63);
  if (provider.isolation.startsWith('namespaces')) assert.equal(logs, `${cut}\n${cut}\n`);
  else assert.equal(logs.split('\n')[0], cut);
});

test('state.json is written for the agent only, with no temporary file left', async (t) => {
  const { provider, dir } = setup(t, { isolation: 'none', cgroups: 'none' });
  const p = pod('saved', {
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '60'] }],
  });
  await provider.createPod(p, signal);
  const d = podDir(dir, p);
  assert.equal(statSync(join(d, 'state.json')).mode & 0o777, 0o600);
  assert.ok(!existsSync(join(d, 'state.json.tmp')));
  JSON.parse(readFileSync(join(d, 'state.json'), 'utf8'));
});

test('an unreadable state.json: its processes are stopped once, the pod is not adopted', async (t) => {
  for (const isolation of ['none', 'auto'] as const) {
    const { logger, errors } = errorLog();
    const { provider, make, dir } = setup(t, { isolation, cgroups: 'none' }, logger);
    const p = pod(`corrupt-${isolation}`, {
      containers: [{ name: 'app', image: 'busybox', command: ['sleep', '600'] }],
    });
    await provider.createPod(p, signal);
    const d = podDir(dir, p);
    // The command's own process (in its own session) is noted too, once found.
    await waitFor(() => notedProcesses(d).length >= 2, { what: 'processes noted' });
    const noted = notedProcesses(d);
    await provider.close();
    writeFileSync(join(d, 'state.json'), '{"version":1,"pod":{"metad');
    const next = make();
    await waitFor(() => noted.every((r) => !isAlive(r)), { what: 'the processes stopped' });
    assert.equal(await next.getPod('unit', p.metadata?.name ?? '', signal), undefined);
    assert.ok(existsSync(join(d, 'state.json.corrupt')));
    assert.equal(errors.filter((e) => e.startsWith('cannot read a pod state')).length, 1);
    // A third agent finds nothing more to report.
    await next.close();
    make();
    assert.equal(errors.filter((e) => e.startsWith('cannot read a pod state')).length, 1);
    assert.ok(readdirSync(d).includes('processes'));
    assert.equal(processRef(noted[0]?.pid ?? 0)?.start === noted[0]?.start, false);
  }
});

test('preStop httpGet resolves a named port and does not follow a redirect to another host', async (t) => {
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(`${req.headers.host ?? ''} ${req.url ?? ''}`);
    if (req.url === '/stop') {
      const port = (server.address() as AddressInfo).port;
      res.writeHead(302, { location: `http://127.0.0.2:${String(port)}/elsewhere` }).end();
    } else res.writeHead(200).end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const port = (server.address() as AddressInfo).port;
  const { provider } = setup(t, { isolation: 'none', cgroups: 'none' });
  const p = pod('prestop-http', {
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '60'],
        ports: [{ name: 'admin', containerPort: port }],
        lifecycle: { preStop: { httpGet: { port: 'admin', path: '/stop' } } },
      },
    ],
  });
  await provider.createPod(p, signal);
  await waitFor(
    async () =>
      (await provider.getPodStatus('unit', 'prestop-http', signal))?.containerStatuses?.[0]?.state
        ?.running !== undefined,
    { what: 'running' },
  );
  await provider.deletePod(
    { ...p, metadata: { ...p.metadata, deletionGracePeriodSeconds: 2 } },
    signal,
  );
  assert.deepEqual(seen, [`127.0.0.1:${String(port)} /stop`]);
});
