/**
 * Isolation of the process provider: the securityContext as the process gets it (user,
 * groups, capabilities, no_new_privs, runAsNonRoot), and what a pod cannot reach of another
 * pod or of the agent. The command-line tests need nothing; the others run real pods and need
 * the agent to be root with namespaces (they fail, saying so, otherwise).
 */
import type { V1Pod, V1PodSpec, V1PodStatus } from '../../../../src/wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { parseProcessConfig } from '../../../../src/providers/process/config.js';
import { ProcessProvider, type ProcessConfig } from '../../../../src/providers/process/index.js';
import { emptyDirAccess } from '../../../../src/providers/process/volumes.js';
import {
  expandHiddenPaths,
  isolationLines,
  readOnlyMounts,
} from '../../../../src/providers/process/isolation.js';
import {
  findTools,
  launchArgv,
  privilegePrefix,
  type Tools,
} from '../../../../src/providers/process/launch.js';
import {
  capabilitySet,
  containerPrivileges,
  DEFAULT_CAPABILITIES,
  runAsNonRootProblem,
  setprivOptions,
} from '../../../../src/providers/process/security.js';
import { processFixture, processStateDir } from '../../../helpers/process-pods.js';
import { waitFor } from '../../../helpers/wait.js';

const signal = new AbortController().signal;

function pod(name: string, spec: Partial<V1PodSpec>): V1Pod {
  return {
    metadata: { namespace: 'unit', name, uid: randomUUID() },
    spec: { terminationGracePeriodSeconds: 1, containers: [], ...spec },
  };
}

const tools = (): Tools => {
  const t = findTools();
  if (typeof t === 'string') assert.fail(t);
  return t;
};

test('capabilities: the runtime default set, drop ALL, add after drop, unknown names', () => {
  assert.deepEqual(
    [...(capabilitySet(undefined) as string[])].sort(),
    [...DEFAULT_CAPABILITIES].sort(),
  );
  assert.deepEqual(capabilitySet({ drop: ['ALL'] }), []);
  assert.deepEqual(capabilitySet({ drop: ['ALL'], add: ['NET_BIND_SERVICE'] }), [
    'NET_BIND_SERVICE',
  ]);
  const some = capabilitySet({ drop: ['CHOWN', 'cap_kill'], add: ['SYS_ADMIN'] }) as string[];
  assert.ok(some.includes('SYS_ADMIN') && !some.includes('CHOWN') && !some.includes('KILL'));
  assert.equal((capabilitySet({ add: ['ALL'] }) as string[]).length, 41);
  assert.deepEqual(capabilitySet({ add: ['NOPE'] }), { error: 'unknown capability "CAP_NOPE"' });
});

test('setpriv options: user, groups, no_new_privs, bounding set; privileged keeps all', () => {
  const p = pod('p', {
    securityContext: { runAsUser: 1000, supplementalGroups: [5, 6], fsGroup: 7 },
    containers: [
      {
        name: 'app',
        securityContext: {
          runAsGroup: 3000,
          allowPrivilegeEscalation: false,
          capabilities: { drop: ['ALL'], add: ['CHOWN', 'NET_BIND_SERVICE'] },
        },
      },
    ],
  });
  const c = p.spec?.containers[0];
  assert.ok(c);
  const priv = containerPrivileges(p, c);
  assert.ok(!('error' in priv));
  assert.deepEqual(setprivOptions(priv, true), [
    '--reuid=1000',
    '--regid=3000',
    '--groups=5,6,7',
    '--no-new-privs',
    '--bounding-set=-all,+chown,+net_bind_service',
    '--inh-caps=-all',
    '--ambient-caps=-all',
    '--',
  ]);
  // Not root: only what needs no privilege.
  assert.deepEqual(setprivOptions(priv, false), ['--no-new-privs', '--']);
  const root = containerPrivileges(pod('r', {}), {
    name: 'app',
    securityContext: { privileged: true },
  });
  assert.ok(!('error' in root));
  assert.deepEqual(setprivOptions(root, true), [
    '--reuid=0',
    '--regid=0',
    '--clear-groups',
    '--inh-caps=-all',
    '--ambient-caps=-all',
    '--',
  ]);
  const argv = launchArgv(
    {
      argv: ['id'],
      workingDir: '/work',
      cgroupProcs: [],
      mounts: [{ source: '/state/pods/p/volumes/v', target: '/data', readOnly: false }],
      privileges: priv,
      readOnlyMounts: ['/'],
      hiddenPaths: [{ path: '/state', file: false }],
      exitFile: '/state/pods/p/run/x.exit',
      errorFile: '/state/pods/p/run/x.error',
      tty: false,
    },
    tools(),
  );
  const script = argv.find((a) => a.includes('exec 9<&-')) ?? '';
  // The volumes are bound before anything is hidden or made read-only; the working directory
  // is entered once the state directory is hidden, and the descriptor of the run directory
  // (through which a start error is written) is closed before the command.
  const order = [
    "exec 9< '/state/pods/p/run'",
    "> /proc/self/fd/9/'x.error'",
    "--bind '/state/pods/p/volumes/v' '/data'",
    "-o remount,bind,ro '/'",
    "tmpfs '/state'",
    "cd '/work'",
    'exec 9<&-',
    'setsid',
  ].map((part) => script.indexOf(part));
  assert.ok(
    order.every((at, i) => at >= 0 && (i === 0 || at > (order[i - 1] ?? 0))),
    `${JSON.stringify(order)}\n${script}`,
  );
  // As root the command runs under setpriv with the container's privileges.
  assert.match(
    privilegePrefix(priv, tools(), true),
    /^'[^']*setpriv' '--reuid=1000' '--regid=3000' '--groups=5,6,7' '--no-new-privs' .* '--' $/,
  );
  assert.equal(privilegePrefix(undefined, tools(), true), '');
});

test('runAsNonRoot: refused as the kubelet refuses it, in its words', () => {
  const p = (sc: object, csc: object = {}): V1Pod => ({
    metadata: { namespace: 'ns', name: 'web', uid: 'u-1' },
    spec: { securityContext: sc, containers: [{ name: 'app', securityContext: csc }] },
  });
  const check = (x: V1Pod, imageUid = 0): string | undefined =>
    runAsNonRootProblem(x, x.spec?.containers[0] ?? { name: '' }, imageUid);
  assert.equal(
    check(p({ runAsNonRoot: true })),
    'container has runAsNonRoot and image will run as root (pod: "web_ns(u-1)", container: app)',
  );
  assert.equal(
    check(p({ runAsNonRoot: true }, { runAsUser: 0 })),
    `container's runAsUser breaks non-root policy (pod: "web_ns(u-1)", container: app)`,
  );
  assert.equal(check(p({ runAsNonRoot: true, runAsUser: 1000 })), undefined);
  assert.equal(check(p({ runAsNonRoot: true }), 1000), undefined);
  // The container's setting wins over the pod's.
  assert.equal(check(p({ runAsNonRoot: true }, { runAsNonRoot: false })), undefined);
  assert.equal(check(p({})), undefined);
});

test('config: hiddenPaths are absolute, ~ or $VAR paths', () => {
  assert.deepEqual(parseProcessConfig({ hiddenPaths: ['/a', '~/b', '$C/d'] }), {
    hiddenPaths: ['/a', '~/b', '$C/d'],
  });
  assert.throws(() => parseProcessConfig({ hiddenPaths: ['rel'] }), /absolute paths \(not "rel"\)/);
  assert.throws(() => parseProcessConfig({ hiddenPaths: '/a' }), /an array of strings/);
});

test('hidden paths expand ~ and $VARS; read-only mounts keep volumes and kernel file systems', () => {
  assert.deepEqual(
    expandHiddenPaths(
      ['~/.cache/x', '$VK_CACHE_DIR', '${OTHER}/y', '/abs/'],
      { OTHER: '/o' },
      '/home/a',
    ),
    ['/home/a/.cache/x', '/o/y', '/abs'],
  );
  assert.deepEqual(
    readOnlyMounts(
      [
        '/',
        '/proc',
        '/sys/fs/cgroup',
        '/dev/pts',
        '/tmp',
        '/home',
        '/data',
        '/data/sub',
        '/var/lib/vk',
      ],
      ['/data', '/var/lib/vk'],
    ),
    ['/', '/home'],
  );
  const lines = isolationLines(
    ['/'],
    [
      { path: '/var/lib/vk', file: false },
      { path: '/var/lib/vk/inner', file: false },
      { path: '/etc/kubeconfig', file: true },
    ],
    tools(),
  ).join('\n');
  assert.match(lines, /-o remount,bind,ro '\/'/);
  assert.match(lines, /-t tmpfs -o ro,[^ ]*mode=000 tmpfs '\/var\/lib\/vk'/);
  assert.doesNotMatch(lines, /inner/);
  assert.match(lines, /--bind \/dev\/null '\/etc\/kubeconfig'/);
});

/** A provider on a fresh state directory, reaped after the test; fails unless root with namespaces. */
function setup(t: TestContext, config: ProcessConfig = {}): ProcessProvider {
  assert.equal(process.getuid?.(), 0, 'these tests need the agent to run as root');
  const { provider } = processFixture(t, 'security', { config });
  assert.ok(provider.isolation.startsWith('namespaces'), provider.isolation);
  return provider;
}

const status = async (p: ProcessProvider, name: string): Promise<V1PodStatus | undefined> =>
  p.getPodStatus('unit', name, signal);

/** Waits for the pod to end and returns its container's log. */
async function finished(p: ProcessProvider, name: string): Promise<string> {
  await waitFor(
    async () => {
      const phase = (await status(p, name))?.phase;
      return phase === 'Succeeded' || phase === 'Failed';
    },
    { what: `pod ${name} to end` },
  );
  return text(
    await p.getContainerLogs(
      'unit',
      name,
      'app',
      { follow: false, previous: false, timestamps: false },
      signal,
    ),
  );
}

const TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount';

/** A pod with a service-account token volume and an emptyDir, as the API server makes them. */
function tokenPod(name: string, spec: Partial<V1PodSpec>, command: string): V1Pod {
  const p = pod(name, {
    restartPolicy: 'Never',
    volumes: [
      { name: 'kube-api-access', projected: { defaultMode: 0o644, sources: [] } },
      { name: 'scratch', emptyDir: {} },
    ],
    ...spec,
  });
  p.spec?.containers.push({
    name: 'app',
    image: 'busybox',
    command: ['sh', '-c', command],
    volumeMounts: [
      { name: 'kube-api-access', mountPath: TOKEN_PATH, readOnly: true },
      { name: 'scratch', mountPath: '/scratch' },
    ],
  });
  return p;
}

test("a pod running as 65534 reaches its own token and emptyDir, not another pod's nor the state directory", async (t) => {
  const provider = setup(t);
  // As the core projects them: a token owned by the pod's one user is 0600 (B has none).
  const token = (p: V1Pod, secret: string, owner?: number): Promise<void> =>
    provider.setPodVolumes(
      p,
      [
        {
          name: 'kube-api-access',
          files: [
            owner === undefined
              ? { path: 'token', data: Buffer.from(secret), mode: 0o644 }
              : { path: 'token', data: Buffer.from(secret), mode: 0o600, owner },
            { path: 'private', data: Buffer.from('group-readable'), mode: 0o400 },
          ],
        },
      ],
      signal,
    );
  const b = tokenPod('pod-b', {}, 'echo b > /scratch/mine; sleep 3600');
  await token(b, 'token-of-b');
  await provider.createPod(b, signal);
  const bDir = provider.podRecord('unit', 'pod-b')?.dir;
  assert.ok(bDir);
  const bToken = join(bDir, 'volumes', 'kube-api-access', 'token');
  const bScratch = join(bDir, 'volumes', 'scratch');
  await waitFor(() => statSync(join(bScratch, 'mine'), { throwIfNoEntry: false }), {
    what: "pod B's file in its emptyDir",
  });
  const stateDir = provider.stateDir;
  const script = [
    `id -u`,
    `cat ${TOKEN_PATH}/token; echo`,
    // fsGroup makes a 0400 file group-readable, as the kubelet does.
    `cat ${TOKEN_PATH}/private; echo`,
    `echo a > /scratch/mine && echo own-emptydir-ok`,
    `cat ${bToken} 2>&1 || echo other-token-refused`,
    `touch ${bScratch}/from-a 2>&1 || echo other-emptydir-refused`,
    `ls ${stateDir} 2>&1 || echo state-dir-refused`,
    `ls ${stateDir}/pods 2>&1 || echo pods-dir-refused`,
  ].join('\n');
  const a = tokenPod(
    'pod-a',
    { securityContext: { runAsUser: 65534, runAsGroup: 65534, fsGroup: 4242 } },
    script,
  );
  await token(a, 'token-of-a', 65534);
  await provider.createPod(a, signal);
  const log = await finished(provider, 'pod-a');
  const lines = log.split('\n');
  assert.equal(lines[0], '65534', log);
  assert.equal(lines[1], 'token-of-a', log);
  assert.equal(lines[2], 'group-readable', log);
  assert.match(log, /^own-emptydir-ok$/m);
  assert.doesNotMatch(log, /token-of-b/);
  assert.match(log, /Permission denied[^\n]*\nother-token-refused/);
  assert.match(log, /Permission denied[^\n]*\nother-emptydir-refused/);
  assert.match(log, /Permission denied[^\n]*\nstate-dir-refused/);
  assert.match(log, /Permission denied[^\n]*\npods-dir-refused/);
  assert.equal(statSync(join(bScratch, 'from-a'), { throwIfNoEntry: false }), undefined);
  // On the host: the state directory is the agent's alone, and so is each pod's state.
  assert.equal(statSync(stateDir).mode & 0o777, 0o700);
  assert.equal(statSync(join(stateDir, 'pods')).mode & 0o777, 0o700);
  assert.equal(statSync(join(bDir, 'state.json')).mode & 0o777, 0o600);
  // fsGroup: the volume's files and the emptyDir belong to the group, directories setgid.
  const aDir = provider.podRecord('unit', 'pod-a')?.dir ?? '';
  const aToken = statSync(join(aDir, 'volumes', 'kube-api-access', 'token'));
  assert.equal(aToken.uid, 65534);
  const priv = statSync(join(aDir, 'volumes', 'kube-api-access', 'private'));
  assert.equal(priv.gid, 4242);
  assert.equal(priv.mode & 0o777, 0o440);
  // The emptyDir is not world-writable: its one user owns it, the group shares it.
  const scratch = statSync(join(aDir, 'volumes', 'scratch'));
  assert.equal(scratch.uid, 65534);
  assert.equal(scratch.gid, 4242);
  assert.equal(scratch.mode & 0o7777, 0o2770);
  // B's containers run as root: root owns its emptyDir, 0770.
  assert.equal(statSync(bScratch).mode & 0o7777, 0o770);
});

test('emptyDir access: one user owns it, else the fsGroup shares it, else 0777 as the kubelet', () => {
  const spec = (users: (number | undefined)[], fsGroup?: number): V1Pod =>
    pod('access', {
      ...(fsGroup !== undefined ? { securityContext: { fsGroup } } : {}),
      containers: users.map((u, i) => ({
        name: `c${String(i)}`,
        image: 'busybox',
        ...(u !== undefined ? { securityContext: { runAsUser: u } } : {}),
      })),
    });
  assert.deepEqual(emptyDirAccess(spec([1000, 1000])), { mode: 0o770, uid: 1000 });
  assert.deepEqual(emptyDirAccess(spec([undefined])), { mode: 0o770, uid: 0 });
  assert.deepEqual(emptyDirAccess(spec([1000, 2000], 3000)), { mode: 0o770, fsGroup: 3000 });
  assert.deepEqual(emptyDirAccess(spec([1000, 2000])), { mode: 0o777 });
});

test("runAsNonRoot without a user is refused with the kubelet's message and an Event", async (t) => {
  const provider = setup(t);
  const events: string[] = [];
  provider.notifyPodEvents((_pod, e) => events.push(`${e.type} ${e.reason} ${e.message}`));
  const p = pod('nonroot', {
    securityContext: { runAsNonRoot: true },
    containers: [{ name: 'app', image: 'busybox', command: ['sleep', '3600'] }],
  });
  const uid = p.metadata?.uid ?? '';
  const message = `container has runAsNonRoot and image will run as root (pod: "nonroot_unit(${uid})", container: app)`;
  await assert.rejects(provider.createPod(p, signal), (err: unknown) => {
    assert.equal((err as Error).message, message);
    return true;
  });
  const waiting = (await status(provider, 'nonroot'))?.containerStatuses?.[0]?.state?.waiting;
  assert.deepEqual(waiting, { reason: 'CreateContainerConfigError', message });
  // Once, as a Failed Event (a MissingClusterDNS Event may come too: no cluster DNS here).
  assert.deepEqual(
    events.filter((e) => !e.startsWith('Warning MissingClusterDNS ')),
    [`Warning Failed Error: ${message}`],
  );
  assert.equal(provider.mainProcess('unit', 'nonroot', 'app'), undefined);
  // Explicit root breaks the policy in other words.
  const q = pod('root0', {
    securityContext: { runAsNonRoot: true },
    containers: [
      { name: 'app', image: 'busybox', command: ['true'], securityContext: { runAsUser: 0 } },
    ],
  });
  await assert.rejects(
    provider.createPod(q, signal),
    /container's runAsUser breaks non-root policy/,
  );
});

test('drop ALL as root cannot chown; allowPrivilegeEscalation false sets no_new_privs', async (t) => {
  const provider = setup(t);
  const p = pod('caps', {
    restartPolicy: 'Never',
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: [
          'sh',
          '-c',
          'id -u; grep -E "^(NoNewPrivs|CapBnd|CapEff)" /proc/self/status; touch /tmp/f; chown 1:1 /tmp/f 2>&1 || echo chown-refused',
        ],
        securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
      },
    ],
  });
  await provider.createPod(p, signal);
  const log = await finished(provider, 'caps');
  assert.match(log, /^0$/m);
  assert.match(log, /^NoNewPrivs:\s+1$/m);
  assert.match(log, /^CapBnd:\s+0+$/m);
  assert.match(log, /^CapEff:\s+0+$/m);
  assert.match(log, /Operation not permitted\nchown-refused/);
  // The default set keeps chown; no_new_privs is off unless asked for.
  const q = pod('defaults', {
    restartPolicy: 'Never',
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: [
          'sh',
          '-c',
          'grep NoNewPrivs /proc/self/status; touch /tmp/f; chown 1:1 /tmp/f && echo chown-ok',
        ],
      },
    ],
  });
  await provider.createPod(q, signal);
  const log2 = await finished(provider, 'defaults');
  assert.match(log2, /^NoNewPrivs:\s+0$/m);
  assert.match(log2, /^chown-ok$/m);
});

test('readOnlyRootFilesystem: /etc is read-only, the emptyDir and /tmp are writable', async (t) => {
  const provider = setup(t);
  const marker = `/etc/vk-ro-test-${randomUUID()}`;
  t.after(() => {
    rmSync(marker, { force: true });
  });
  const p = pod('ro', {
    restartPolicy: 'Never',
    volumes: [{ name: 'scratch', emptyDir: {} }],
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: [
          'sh',
          '-c',
          `touch ${marker} 2>&1 || echo etc-refused; echo ok > /scratch/x && echo emptydir-ok; echo ok > /tmp/x && echo tmp-ok`,
        ],
        volumeMounts: [{ name: 'scratch', mountPath: '/scratch' }],
        securityContext: { readOnlyRootFilesystem: true },
      },
    ],
  });
  await provider.createPod(p, signal);
  const log = await finished(provider, 'ro');
  assert.match(log, /Read-only file system\netc-refused/);
  assert.match(log, /^emptydir-ok$/m);
  assert.match(log, /^tmp-ok$/m);
  assert.equal(statSync(marker, { throwIfNoEntry: false }), undefined);
});

test('configured hidden paths are covered: a directory and a file; one the pod cannot see is no error', async (t) => {
  const root = processStateDir();
  mkdirSync(join(root, 'pki'), { recursive: true });
  writeFileSync(join(root, 'pki', 'ca.key'), 'secret-key');
  writeFileSync(join(root, 'admin.conf'), 'secret-conf');
  // On the host, but not in the pod's view: each pod has a /tmp of its own.
  const underTmp = mkdtempSync(join(tmpdir(), 'vk-hidden-'));
  t.after(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(underTmp, { recursive: true, force: true });
  });
  const provider = setup(t, {
    hiddenPaths: [join(root, 'pki'), join(root, 'admin.conf'), underTmp],
  });
  const p = pod('hidden', {
    restartPolicy: 'Never',
    containers: [
      {
        name: 'app',
        image: 'busybox',
        command: [
          'sh',
          '-c',
          `ls ${root}/pki; cat ${root}/admin.conf; ls /proc/1/root${root}/pki 2>&1; echo end`,
        ],
      },
    ],
  });
  await provider.createPod(p, signal);
  const log = await finished(provider, 'hidden');
  assert.doesNotMatch(log, /secret|ca\.key/);
  // Nor through the root of the pod's PID 1 (the sandbox, which has every capability).
  assert.match(log, /Permission denied\nend/);
});
