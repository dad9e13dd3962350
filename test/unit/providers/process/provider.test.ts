/**
 * The process provider with real processes but no cluster: what the e2e tests cannot reach
 * through kubectl (terminal resizes, attach, a second provider adopting the first's pods) and
 * the lifecycle details (init containers, deadlines, follow).
 */
import type { V1Pod, V1PodSpec, V1PodStatus } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import {
  ISOLATION_ANNOTATION,
  ProcessProvider,
  type ProcessConfig,
} from '../../../../src/providers/process/index.js';
import type { TerminalSize } from '../../../../src/provider.js';
import { errorCode, errorMessage } from '../../../../src/errors.js';
import { processFixture, processStateDir } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;

function setup(
  t: TestContext,
  config: ProcessConfig = {},
): { provider: ProcessProvider; make: () => ProcessProvider } {
  return processFixture(t, 'process', { config: { network: 'host', ...config } });
}

function pod(name: string, spec: Partial<V1PodSpec>): V1Pod {
  return {
    metadata: { namespace: 'unit', name, uid: randomUUID() },
    spec: { terminationGracePeriodSeconds: 1, containers: [], ...spec },
  };
}

const status = async (p: ProcessProvider, name: string): Promise<V1PodStatus | undefined> =>
  p.getPodStatus('unit', name, signal);

/** Yields each size after its delay (ms since the previous one). */
async function* sizes(...list: [number, TerminalSize][]): AsyncGenerator<TerminalSize> {
  for (const [ms, size] of list) {
    await delay(ms);
    yield size;
  }
}

test('exec with a TTY gets a terminal, and resizes reach it as SIGWINCH', async (t) => {
  const { provider } = setup(t);
  await provider.createPod(
    pod('tty', { containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] }),
    signal,
  );
  const out = new PassThrough();
  const got = text(out);
  const code = await provider.runInContainer(
    'unit',
    'tty',
    'app',
    ['sh', '-c', 'trap "echo winch" WINCH; sleep 0.8; stty size; sleep 1.2; stty size'],
    {
      stdout: out,
      tty: true,
      resize: sizes([100, { width: 100, height: 40 }], [1300, { width: 120, height: 50 }]),
    },
    signal,
  );
  out.end();
  assert.equal(code, 0);
  assert.match(await got, /40 100\r\n(winch\r\n)*50 120\r\n/);
});

test('attach writes to the stdin of the main process and reads what it prints', async (t) => {
  const { provider } = setup(t);
  await provider.createPod(
    pod('echo', {
      containers: [
        {
          name: 'app',
          image: 'busybox',
          stdin: true,
          command: ['sh', '-c', 'while read line; do echo "got $line"; done'],
        },
      ],
    }),
    signal,
  );
  const stdin = new PassThrough();
  const stdout = new PassThrough();
  const got = text(stdout);
  const session = provider.attachToContainer(
    'unit',
    'echo',
    'app',
    { stdin, stdout, tty: false },
    signal,
  );
  stdin.write('one\n');
  stdin.end('two\n');
  await session;
  stdout.end();
  assert.equal(await got, 'got one\ngot two\n');
});

test('init containers run in order before the app container', async (t) => {
  const { provider } = setup(t);
  if (!hasNamespaces(t, provider)) return;
  const echo = (word: string): string[] => ['sh', '-c', `echo ${word} >> /shared/order`];
  await provider.createPod(
    withMounts(
      pod('init', {
        volumes: [{ name: 'shared', emptyDir: { medium: 'Memory' } }],
        initContainers: [
          { name: 'first', image: 'busybox', command: echo('first') },
          { name: 'second', image: 'busybox', command: echo('second') },
        ],
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['sh', '-c', 'echo app >> /shared/order; cat /shared/order; sleep 3600'],
          },
        ],
      }),
    ),
    signal,
  );
  await waitFor(async () => (await status(provider, 'init'))?.phase === 'Running', {
    what: 'Running',
  });
  const s = await status(provider, 'init');
  assert.deepEqual(
    s?.initContainerStatuses?.map((c) => c.state?.terminated?.reason),
    ['Completed', 'Completed'],
  );
  const logs = await waitFor(
    async () => {
      const l = await text(
        await provider.getContainerLogs(
          'unit',
          'init',
          'app',
          { follow: false, previous: false, timestamps: false },
          signal,
        ),
      );
      return l.includes('app') ? l : undefined;
    },
    { what: 'the app log' },
  );
  assert.equal(logs, 'first\nsecond\napp\n');
  // medium: Memory is a tmpfs.
  assert.match(
    await exec(provider, 'init', ['grep', ' /shared ', '/proc/self/mountinfo']),
    / - tmpfs /,
  );
});

/** Mounts every volume of the pod at /<name> in every container. */
function withMounts(p: V1Pod): V1Pod {
  const mounts = (p.spec?.volumes ?? []).map((v) => ({ name: v.name, mountPath: `/${v.name}` }));
  for (const c of [...(p.spec?.initContainers ?? []), ...(p.spec?.containers ?? [])])
    c.volumeMounts = mounts;
  return p;
}

test('activeDeadlineSeconds fails the pod with DeadlineExceeded', async (t) => {
  const { provider } = setup(t);
  await provider.createPod(
    pod('deadline', {
      activeDeadlineSeconds: 1,
      containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
    }),
    signal,
  );
  const s = await waitFor(
    async () => {
      const st = await status(provider, 'deadline');
      return st?.phase === 'Failed' ? st : undefined;
    },
    { what: 'Failed', timeoutMs: 10_000 },
  );
  assert.equal(s.reason, 'DeadlineExceeded');
  assert.ok(s.containerStatuses?.[0]?.state?.terminated);
});

test('logs -f follows the container until it exits', async (t) => {
  const { provider } = setup(t);
  await provider.createPod(
    pod('follow', {
      restartPolicy: 'Never',
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sh', '-c', 'for i in 1 2 3; do echo line $i; sleep 0.3; done'],
        },
      ],
    }),
    signal,
  );
  const stream = await waitFor(
    () =>
      provider
        .getContainerLogs(
          'unit',
          'follow',
          'app',
          { follow: true, previous: false, timestamps: false },
          signal,
        )
        .catch(() => undefined),
    { what: 'the log' },
  );
  assert.equal(await text(stream), 'line 1\nline 2\nline 3\n');
  const s = await status(provider, 'follow');
  assert.equal(s?.phase, 'Succeeded');
});

test('a second provider on the same state directory adopts running pods', async (t) => {
  const { provider, make } = setup(t);
  const p = pod('adopted', {
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  await provider.createPod(p, signal);
  const main = await waitFor(() => provider.mainProcess('unit', 'adopted', 'app'), {
    what: 'the main process',
  });
  await provider.close();
  const again = make();
  // createPod of a pod the provider already runs starts nothing.
  await again.createPod(p, signal);
  assert.deepEqual(again.mainProcess('unit', 'adopted', 'app'), main);
  const s = await status(again, 'adopted');
  assert.equal(s?.phase, 'Running');
  assert.equal(s.containerStatuses?.[0]?.restartCount, 0);
  const node = { metadata: {}, status: {} };
  again.configureNode(node);
  assert.match(
    (node.metadata as { annotations?: Record<string, string> }).annotations?.[
      ISOLATION_ANNOTATION
    ] ?? '',
    /namespaces|no-namespaces/,
  );
});

const exec = async (p: ProcessProvider, name: string, command: string[]): Promise<string> => {
  const out = new PassThrough();
  const got = text(out);
  const code = await p.runInContainer(
    'unit',
    name,
    'app',
    command,
    { stdout: out, stderr: out, tty: false },
    signal,
  );
  out.end();
  return `${String(code)}:${await got}`;
};

test('a pod whose sandbox was killed gets a new one and its containers restart', async (t) => {
  const { provider } = setup(t);
  if (!hasNamespaces(t, provider)) return;
  await provider.createPod(
    pod('revive', { containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] }),
    signal,
  );
  const sandbox = provider.podRecord('unit', 'revive')?.sandbox;
  assert.ok(sandbox, 'the pod has a sandbox');
  process.kill(sandbox.pid, 'SIGKILL');
  await waitFor(
    async () => {
      const s = await status(provider, 'revive');
      const cs = s?.containerStatuses?.[0];
      return cs?.restartCount === 1 && cs.state?.running !== undefined;
    },
    { what: 'the container to run again', timeoutMs: 10_000 },
  );
  assert.notEqual(provider.podRecord('unit', 'revive')?.sandbox?.pid, sandbox.pid);
  assert.equal(await exec(provider, 'revive', ['hostname']), '0:revive\n');
});

test('hostPath volumes mount at their path; readOnly is honoured', async (t) => {
  const { provider } = setup(t);
  if (!hasNamespaces(t, provider)) return;
  const host = processStateDir();
  mkdirSync(host, { recursive: true });
  t.after(() => {
    rmSync(host, { recursive: true, force: true });
  });
  writeFileSync(join(host, 'data.txt'), 'from the host');
  const p = pod('hostpath', {
    volumes: [{ name: 'h', hostPath: { path: host, type: 'Directory' } }],
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '3600'],
        workingDir: '/mnt/vk-unit-host',
        volumeMounts: [{ name: 'h', mountPath: '/mnt/vk-unit-host', readOnly: true }],
      },
    ],
  });
  await provider.createPod(p, signal);
  await waitFor(async () => (await status(provider, 'hostpath'))?.phase === 'Running', {
    what: 'Running',
  });
  assert.equal(
    await exec(provider, 'hostpath', ['cat', '/mnt/vk-unit-host/data.txt']),
    '0:from the host',
  );
  // exec starts in the working directory, which is the volume, not the host's directory below.
  assert.equal(await exec(provider, 'hostpath', ['cat', 'data.txt']), '0:from the host');
  assert.match(
    await exec(provider, 'hostpath', ['sh', '-c', 'touch /mnt/vk-unit-host/x 2>&1']),
    /^1:.*Read-only file system/,
  );
  await provider.deletePod(p, signal);
  // The mount point the pod needed on the host is removed with it.
  assert.equal(existsSync('/mnt/vk-unit-host'), false);
});

test('a mount point two pods need stays while one of them is left; the last one takes it', async (t) => {
  const { provider } = setup(t);
  if (!hasNamespaces(t, provider)) return;
  const host = processStateDir();
  mkdirSync(host, { recursive: true });
  t.after(() => {
    rmSync(host, { recursive: true, force: true });
  });
  writeFileSync(join(host, 'data.txt'), 'shared');
  const mountPath = '/mnt/vk-unit-shared/deeper';
  const spec = (): Partial<V1PodSpec> => ({
    volumes: [{ name: 'h', hostPath: { path: host, type: 'Directory' } }],
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: ['sleep', '3600'],
        volumeMounts: [{ name: 'h', mountPath, readOnly: true }],
      },
    ],
  });
  // The first pod creates the mount point; the second finds it there.
  const first = pod('first', spec());
  const second = pod('second', spec());
  await provider.createPod(first, signal);
  await provider.createPod(second, signal);
  for (const name of ['first', 'second'])
    await waitFor(async () => (await status(provider, name))?.phase === 'Running', {
      what: `${name} Running`,
    });
  await provider.deletePod(first, signal);
  // The pod that made it is gone; the other still needs it (a restart of its container does).
  assert.equal(existsSync(mountPath), true);
  const third = pod('third', spec());
  await provider.createPod(third, signal);
  await waitFor(async () => (await status(provider, 'third'))?.phase === 'Running', {
    what: 'a third pod Running on the same mount point',
  });
  assert.equal(await exec(provider, 'third', ['cat', `${mountPath}/data.txt`]), '0:shared');
  await provider.deletePod(second, signal);
  await provider.deletePod(third, signal);
  assert.equal(existsSync('/mnt/vk-unit-shared'), false, 'removed with the last pod');
});

test('without namespaces and cgroups pods are plain processes, and the node says so', async (t) => {
  const { provider } = setup(t, { isolation: 'none', cgroups: 'none' });
  assert.match(provider.isolation, /^no-namespaces \(disabled by config\), no-cgroups/);
  await provider.createPod(
    pod('plain', { containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }] }),
    signal,
  );
  await waitFor(async () => (await status(provider, 'plain'))?.phase === 'Running', {
    what: 'Running',
  });
  assert.equal(await exec(provider, 'plain', ['hostname']), `0:${hostname()}\n`);
  const summary = (await provider.getStatsSummary(signal)) as {
    pods: { containers: { memory: { workingSetBytes: number } }[] }[];
  };
  assert.ok((summary.pods[0]?.containers[0]?.memory.workingSetBytes ?? 0) > 0);
  await assert.rejects(
    provider.createPod(
      pod('mounts', {
        volumes: [{ name: 'e', emptyDir: {} }],
        containers: [
          {
            name: 'app',
            image: 'busybox',
            command: ['true'],
            volumeMounts: [{ name: 'e', mountPath: '/e' }],
          },
        ],
      }),
      signal,
    ),
    /mounts volumes, which needs mount namespaces/,
  );
});

test('a hostPath that is not there is an Unavailable error the core retries', async (t) => {
  const { provider } = setup(t);
  await assert.rejects(
    provider.createPod(
      pod('nohost', {
        volumes: [{ name: 'h', hostPath: { path: '/nonexistent/vk-unit', type: 'Directory' } }],
        containers: [{ name: 'app', image: 'busybox', command: ['true'] }],
      }),
      signal,
    ),
    (err: unknown) =>
      errorCode(err) === 'Unavailable' &&
      /hostPath \/nonexistent\/vk-unit is not a directory/.test(errorMessage(err)),
  );
  assert.equal(await status(provider, 'nohost'), undefined);
});

test('deletion runs the preStop exec hook before SIGTERM', async (t) => {
  const { provider } = setup(t);
  if (!hasNamespaces(t, provider)) return;
  const host = processStateDir();
  mkdirSync(host, { recursive: true });
  t.after(() => {
    rmSync(host, { recursive: true, force: true });
  });
  const p = pod('hooked', {
    terminationGracePeriodSeconds: 5,
    volumes: [{ name: 'out', hostPath: { path: host } }],
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: [
          'sh',
          '-c',
          'trap "echo term >> /out/order; exit 0" TERM; while :; do sleep 0.1; done',
        ],
        lifecycle: { preStop: { exec: { command: ['sh', '-c', 'echo prestop >> /out/order'] } } },
        volumeMounts: [{ name: 'out', mountPath: '/out' }],
      },
    ],
  });
  await provider.createPod(p, signal);
  await waitFor(() => provider.mainProcess('unit', 'hooked', 'app'), { what: 'the main process' });
  await provider.deletePod(p, signal);
  assert.equal(readFileSync(join(host, 'order'), 'utf8'), 'prestop\nterm\n');
  assert.equal(await status(provider, 'hooked'), undefined);
});

/** False, and the test skipped, when this machine gives the provider no namespaces (not root). */
function hasNamespaces(t: TestContext, provider: ProcessProvider): boolean {
  if (provider.isolation.startsWith('namespaces')) return true;
  t.skip(provider.isolation);
  return false;
}

test('securityContext runAsUser and runAsGroup apply to the process and to exec', async (t) => {
  const { provider } = setup(t);
  if (process.getuid?.() !== 0) {
    t.skip('runAsUser needs the agent to run as root');
    return;
  }
  await provider.createPod(
    pod('user', {
      securityContext: { runAsUser: 1234 },
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: ['sleep', '3600'],
          securityContext: { runAsGroup: 5678 },
        },
      ],
    }),
    signal,
  );
  const main = await waitFor(() => provider.mainProcess('unit', 'user', 'app'), {
    what: 'the main process',
  });
  const ids = readFileSync(`/proc/${String(main.pid)}/status`, 'utf8');
  assert.match(ids, /^Uid:\s+1234\s/m);
  assert.match(ids, /^Gid:\s+5678\s/m);
  assert.equal(
    await exec(provider, 'user', ['sh', '-c', 'echo $(id -u):$(id -g)']),
    '0:1234:5678\n',
  );
});

test('a port already in use ends the container with Error, and its log says why', async (t) => {
  const { provider } = setup(t);
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const listen = `require('node:net').createServer().listen(${String(port)}, '127.0.0.1')`;
  await provider.createPod(
    pod('busyport', {
      restartPolicy: 'Never',
      containers: [{ name: 'app', image: 'node', command: [process.execPath, '-e', listen] }],
    }),
    signal,
  );
  const s = await waitFor(
    async () => {
      const st = await status(provider, 'busyport');
      return st?.phase === 'Failed' ? st : undefined;
    },
    { what: 'Failed' },
  );
  const term = s.containerStatuses?.[0]?.state?.terminated;
  assert.equal(term?.reason, 'Error');
  assert.notEqual(term.exitCode, 0);
  const log = await text(
    await provider.getContainerLogs(
      'unit',
      'busyport',
      'app',
      { follow: false, previous: false, timestamps: false },
      signal,
    ),
  );
  assert.match(log, /EADDRINUSE/);
});
