import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { RequestOptions } from 'node:https';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { VirtualKubeletError } from '../../../src/errors.js';
import { KubeClient } from '../../../src/kube/client.js';
import { KubeConfig, loadKubeConfig } from '../../../src/kube/kubeconfig.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'vk-kubeconfig-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A kubeconfig with one context `x` of cluster `c` and user `u`. */
function config(cluster: object, user: object = {}): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [{ name: 'c', cluster: { server: 'https://api.example:6443', ...cluster } }],
    users: [{ name: 'u', user }],
    contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
    'current-context': 'x',
  });
}

/** Options for a KubeConfig that sees no real kubeconfig and no real service account. */
function isolated(dir: string, env: NodeJS.ProcessEnv = {}) {
  return {
    env: { PATH: process.env.PATH, ...env },
    homeDir: join(dir, 'home'),
    serviceAccountDir: join(dir, 'no-sa'),
  };
}

async function apply(kc: KubeConfig): Promise<RequestOptions> {
  const opts: RequestOptions = {};
  await kc.applyToHTTPSOptions(opts);
  return opts;
}

const text = (v: unknown): unknown => (Buffer.isBuffer(v) ? v.toString('utf8') : v);

const authorization = (opts: RequestOptions): unknown =>
  (opts.headers as Record<string, string> | undefined)?.Authorization;

async function rejectsWith(p: Promise<unknown> | (() => unknown), pattern: RegExp): Promise<void> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (err) {
    assert.ok(err instanceof VirtualKubeletError, String(err));
    assert.equal(err.code, 'InvalidInput');
    assert.doesNotMatch(err.message, /\n/);
    assert.match(err.message, pattern);
    return;
  }
  assert.fail(`expected an error matching ${String(pattern)}`);
}

test('KUBECONFIG files merge as kubectl merges them: the first to set a value wins', async (t) => {
  const dir = await tempDir(t);
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  await writeFile(
    a,
    [
      'clusters:',
      '- name: shared',
      '  cluster: {server: "https://from-a:6443"}',
      'users:',
      '- name: ua',
      '  user: {token: token-a}',
      'contexts:',
      '- name: cb',
      '  context: {cluster: only-b, user: ua}',
      '',
    ].join('\n'),
  );
  await writeFile(
    b,
    [
      'clusters:',
      '- name: shared',
      '  cluster: {server: "https://from-b:6443"}',
      '- name: only-b',
      '  cluster: {server: "https://only-b:6443"}',
      'users:',
      '- name: ua',
      '  user: {token: token-b}',
      'contexts:',
      '- name: cb',
      '  context: {cluster: shared, user: ua}',
      'current-context: cb',
      '',
    ].join('\n'),
  );
  const missing = join(dir, 'missing.yaml');
  const kc = loadKubeConfig(
    undefined,
    isolated(dir, { KUBECONFIG: [a, missing, '', b].join(delimiter) }),
  );
  assert.equal(kc.currentContext, 'cb');
  assert.deepEqual(
    kc.clusters.map((c) => [c.name, c.server]),
    [
      ['shared', 'https://from-a:6443'],
      ['only-b', 'https://only-b:6443'],
    ],
  );
  // The context of a (the first file) wins, so the cluster is only-b.
  assert.equal(kc.getCurrentCluster()?.server, 'https://only-b:6443');
  assert.equal(authorization(await apply(kc)), 'Bearer token-a');

  // The first current-context wins too.
  await writeFile(join(dir, 'c.yaml'), 'current-context: other\n');
  const kc2 = new KubeConfig(
    isolated(dir, { KUBECONFIG: [join(dir, 'c.yaml'), b].join(delimiter) }),
  );
  kc2.loadFromDefault();
  assert.equal(kc2.currentContext, 'other');
  assert.equal(kc2.getCurrentCluster(), null);
});

test('~/.kube/config is read when KUBECONFIG is not set', async (t) => {
  const dir = await tempDir(t);
  await mkdir(join(dir, 'home', '.kube'), { recursive: true });
  await writeFile(join(dir, 'home', '.kube', 'config'), config({}, { token: 't' }));
  const kc = loadKubeConfig(undefined, isolated(dir));
  assert.equal(kc.getCurrentCluster()?.server, 'https://api.example:6443');
});

test('relative file paths are relative to the kubeconfig that names them', async (t) => {
  const dir = await tempDir(t);
  const sub = join(dir, 'sub');
  await mkdir(join(sub, 'pki'), { recursive: true });
  await writeFile(join(sub, 'pki', 'ca.crt'), 'CA PEM');
  await writeFile(join(sub, 'pki', 'client.crt'), 'CERT PEM');
  await writeFile(join(sub, 'pki', 'client.key'), 'KEY PEM');
  await writeFile(join(sub, 'token'), 'file-token\n');
  await writeFile(
    join(sub, 'config'),
    config(
      { 'certificate-authority': 'pki/ca.crt' },
      {
        'client-certificate': 'pki/client.crt',
        'client-key': './pki/client.key',
        tokenFile: 'token',
      },
    ),
  );
  const kc = loadKubeConfig(join(sub, 'config'), isolated(dir));
  assert.equal(kc.getCurrentCluster()?.caFile, join(sub, 'pki', 'ca.crt'));
  const opts = await apply(kc);
  assert.equal(text(opts.ca), 'CA PEM');
  assert.equal(text(opts.cert), 'CERT PEM');
  assert.equal(text(opts.key), 'KEY PEM');
  assert.equal(opts.rejectUnauthorized, undefined);
  assert.equal(authorization(opts), 'Bearer file-token');
  // The token file is read again on every call: tokens get rotated.
  await writeFile(join(sub, 'token'), 'rotated\n');
  assert.equal(authorization(await apply(kc)), 'Bearer rotated');
});

test('the -data fields, insecure-skip-tls-verify and tls-server-name', async (t) => {
  const dir = await tempDir(t);
  const kc = new KubeConfig(isolated(dir));
  kc.loadFromString(
    config(
      {
        'certificate-authority-data': b64('CA'),
        'insecure-skip-tls-verify': true,
        'tls-server-name': 'kubernetes.default',
      },
      { 'client-certificate-data': b64('CERT'), 'client-key-data': b64('KEY'), token: 'abc' },
    ),
  );
  assert.equal(kc.getCurrentCluster()?.caData, b64('CA'));
  const opts = await apply(kc);
  assert.equal(text(opts.ca), 'CA');
  assert.equal(text(opts.cert), 'CERT');
  assert.equal(text(opts.key), 'KEY');
  assert.equal(opts.rejectUnauthorized, false);
  assert.equal(opts.servername, 'kubernetes.default');
  assert.equal(authorization(opts), 'Bearer abc');
});

test('basic auth, and a token over a token file', async (t) => {
  const dir = await tempDir(t);
  const kc = new KubeConfig(isolated(dir));
  kc.loadFromString(config({}, { username: 'admin', password: 's3cret:x' }));
  assert.equal(authorization(await apply(kc)), `Basic ${b64('admin:s3cret:x')}`);
  kc.loadFromString(config({}, { token: 'inline', tokenFile: '/nonexistent' }));
  assert.equal(authorization(await apply(kc)), 'Bearer inline');
  // Headers already set are kept.
  const opts: RequestOptions = { headers: { 'X-Other': '1' } };
  await kc.applyToHTTPSOptions(opts);
  assert.deepEqual(opts.headers, { 'X-Other': '1', Authorization: 'Bearer inline' });
});

/** A plugin that counts its runs and prints an ExecCredential; it records its env and args. */
async function plugin(dir: string, status: string): Promise<string> {
  const path = join(dir, 'plugin.sh');
  await writeFile(
    path,
    [
      '#!/bin/sh',
      'n=$(cat "$OUT/count" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$OUT/count"',
      'printf "%s" "$KUBERNETES_EXEC_INFO" > "$OUT/info.json"',
      'printf "%s" "$*" > "$OUT/args"',
      `printf '{"apiVersion":"%s","kind":"ExecCredential","status":${status}}' "$API"`,
      '',
    ].join('\n'),
  );
  await chmod(path, 0o755);
  return path;
}

const execUser = (dir: string, extra: object = {}) => ({
  exec: {
    apiVersion: 'client.authentication.k8s.io/v1',
    command: './plugin.sh',
    args: ['get-token', '--cluster=c'],
    env: [
      { name: 'OUT', value: dir },
      { name: 'API', value: 'client.authentication.k8s.io/v1' },
    ],
    interactiveMode: 'IfAvailable',
    ...extra,
  },
});

test('an exec plugin: token, env, args, cluster info, cached until it expires', async (t) => {
  const dir = await tempDir(t);
  // The token is tok-<run number> (the quotes step out of the script's single-quoted string).
  await plugin(dir, `{"token":"tok-'"$n"'","expirationTimestamp":"2030-01-01T00:00:00Z"}`);
  let now = Date.parse('2029-12-31T23:00:00Z');
  await writeFile(
    join(dir, 'config'),
    JSON.stringify({
      clusters: [
        {
          name: 'c',
          cluster: {
            server: 'https://api.example:6443',
            'certificate-authority-data': b64('CA'),
            extensions: [
              { name: 'client.authentication.k8s.io/exec', extension: { audience: 'k' } },
            ],
          },
        },
      ],
      users: [{ name: 'u', user: execUser(dir, { provideClusterInfo: true }) }],
      contexts: [{ name: 'x', context: { cluster: 'c', user: 'u' } }],
      'current-context': 'x',
    }),
  );
  const kc = loadKubeConfig(join(dir, 'config'), { ...isolated(dir), now: () => now });
  const [first, second] = await Promise.all([apply(kc), apply(kc)]);
  assert.equal(authorization(first), 'Bearer tok-1');
  assert.equal(authorization(second), 'Bearer tok-1');
  assert.equal(await readFile(join(dir, 'args'), 'utf8'), 'get-token --cluster=c');
  const info = JSON.parse(await readFile(join(dir, 'info.json'), 'utf8')) as unknown;
  assert.deepEqual(info, {
    apiVersion: 'client.authentication.k8s.io/v1',
    kind: 'ExecCredential',
    spec: {
      interactive: false,
      cluster: {
        server: 'https://api.example:6443',
        'certificate-authority-data': b64('CA'),
        config: { audience: 'k' },
      },
    },
  });
  // Cached while it is valid.
  assert.equal(authorization(await apply(kc)), 'Bearer tok-1');
  assert.equal((await readFile(join(dir, 'count'), 'utf8')).trim(), '1');
  // Run again once it has expired.
  now = Date.parse('2030-01-01T00:00:01Z');
  assert.equal(authorization(await apply(kc)), 'Bearer tok-2');
  // That one has expired too (same timestamp): it is not reused.
  assert.equal(authorization(await apply(kc)), 'Bearer tok-3');
  now = Date.parse('2029-12-31T23:59:00Z');
  assert.equal(authorization(await apply(kc)), 'Bearer tok-3');
});

test('an exec plugin without provideClusterInfo, answering a client certificate (v1beta1)', async (t) => {
  const dir = await tempDir(t);
  await plugin(dir, '{"clientCertificateData":"CERT","clientKeyData":"KEY"}');
  await writeFile(
    join(dir, 'config'),
    config(
      {},
      execUser(dir, {
        apiVersion: 'client.authentication.k8s.io/v1beta1',
        env: [
          { name: 'OUT', value: dir },
          { name: 'API', value: 'client.authentication.k8s.io/v1beta1' },
        ],
      }),
    ),
  );
  const kc = loadKubeConfig(join(dir, 'config'), isolated(dir));
  const opts = await apply(kc);
  assert.equal(text(opts.cert), 'CERT');
  assert.equal(text(opts.key), 'KEY');
  assert.equal(authorization(opts), undefined);
  const info = JSON.parse(await readFile(join(dir, 'info.json'), 'utf8')) as unknown;
  assert.deepEqual(info, {
    apiVersion: 'client.authentication.k8s.io/v1beta1',
    kind: 'ExecCredential',
    spec: { interactive: false },
  });
});

test('exec plugin failures are one line naming the command', async (t) => {
  const dir = await tempDir(t);
  const load = (user: object): KubeConfig => {
    const kc = new KubeConfig(isolated(dir));
    kc.loadFromString(config({}, user), dir);
    return kc;
  };
  await writeFile(
    join(dir, 'fail.sh'),
    '#!/bin/sh\necho "first" >&2\necho "no login" >&2\nexit 3\n',
  );
  await chmod(join(dir, 'fail.sh'), 0o755);
  await rejectsWith(
    apply(load(execUser(dir, { command: './fail.sh' }))),
    new RegExp(
      `^the exec credential plugin of user "u" \\(${join(dir, 'fail.sh')}\\) failed: exited with 3: no login$`,
    ),
  );
  await rejectsWith(
    apply(load(execUser(dir, { command: 'vk-no-such-plugin', installHint: 'install it\nfrom x' }))),
    /^the exec credential plugin of user "u" \(vk-no-such-plugin\) failed: command not found: install it from x$/,
  );
  await writeFile(join(dir, 'junk.sh'), '#!/bin/sh\necho not json\n');
  await chmod(join(dir, 'junk.sh'), 0o755);
  await rejectsWith(
    apply(load(execUser(dir, { command: './junk.sh' }))),
    /junk\.sh\) failed: its output is not JSON/,
  );
  await plugin(dir, '{}');
  await rejectsWith(
    apply(load(execUser(dir))),
    /failed: its ExecCredential has neither status.token nor/,
  );
  await plugin(dir, '{"token":"t"}');
  await rejectsWith(
    apply(
      load(
        execUser(dir, {
          env: [
            { name: 'OUT', value: dir },
            { name: 'API', value: 'client.authentication.k8s.io/v1beta1' },
          ],
        }),
      ),
    ),
    /failed: it answered apiVersion client.authentication.k8s.io\/v1beta1, expected client.authentication.k8s.io\/v1$/,
  );
  await plugin(dir, '{"token":"t","expirationTimestamp":"soon"}');
  await rejectsWith(apply(load(execUser(dir))), /failed: bad status.expirationTimestamp soon$/);
  // A failure is not cached: the next call runs the plugin again.
  await plugin(dir, '{"token":"ok"}');
  const kc = load(execUser(dir, { command: './fail.sh' }));
  await rejectsWith(apply(kc), /exited with 3/);
  await rejectsWith(apply(kc), /exited with 3/);
});

test('in-cluster: the service account token, CA and namespace, the token re-read', async (t) => {
  const dir = await tempDir(t);
  const sa = join(dir, 'sa');
  await mkdir(sa);
  await writeFile(join(sa, 'token'), 'sa-token-1');
  await writeFile(join(sa, 'ca.crt'), 'SA CA');
  const env = { KUBERNETES_SERVICE_HOST: '10.96.0.1', KUBERNETES_SERVICE_PORT: '443' };
  const kc = loadKubeConfig(undefined, { ...isolated(dir, env), serviceAccountDir: sa });
  assert.equal(kc.getCurrentCluster()?.server, 'https://10.96.0.1:443');
  assert.equal(kc.getCurrentCluster()?.caFile, join(sa, 'ca.crt'));
  assert.equal(kc.getCurrentContext()?.namespace, undefined, 'no namespace file, no namespace');
  await writeFile(join(sa, 'namespace'), 'vk-system\n');
  assert.equal(
    loadKubeConfig(undefined, { ...isolated(dir, env), serviceAccountDir: sa }).getCurrentContext()
      ?.namespace,
    'vk-system',
  );
  let opts = await apply(kc);
  assert.equal(text(opts.ca), 'SA CA');
  assert.equal(authorization(opts), 'Bearer sa-token-1');
  await writeFile(join(sa, 'token'), 'sa-token-2');
  opts = await apply(kc);
  assert.equal(authorization(opts), 'Bearer sa-token-2');

  const v6 = loadKubeConfig(undefined, {
    ...isolated(dir, { KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '6443' }),
    serviceAccountDir: sa,
  });
  assert.equal(v6.getCurrentCluster()?.server, 'https://[fd00::1]:6443');

  // KUBECONFIG naming only missing files falls back to the service account, as kubectl does.
  const fallback = loadKubeConfig(undefined, {
    ...isolated(dir, { ...env, KUBECONFIG: join(dir, 'missing') }),
    serviceAccountDir: sa,
  });
  assert.equal(fallback.getCurrentCluster()?.server, 'https://10.96.0.1:443');

  await rejectsWith(
    () => new KubeConfig(isolated(dir)).loadFromCluster(),
    /^not running inside a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set$/,
  );
});

test('every load error is one line', async (t) => {
  const dir = await tempDir(t);
  const file = async (name: string, text: string): Promise<string> => {
    const path = join(dir, name);
    await writeFile(path, text);
    return path;
  };
  await rejectsWith(
    () => loadKubeConfig('/nonexistent/kubeconfig', isolated(dir)),
    /^cannot load the kubeconfig \/nonexistent\/kubeconfig: no such file$/,
  );
  await rejectsWith(
    () => loadKubeConfig(dir, isolated(dir)),
    new RegExp(`^cannot load the kubeconfig ${dir}: it is a directory$`),
  );
  const bad = await file('bad.yaml', 'clusters: [\n  - {name: c\n');
  await rejectsWith(
    () => loadKubeConfig(bad, isolated(dir)),
    new RegExp(`^cannot load the kubeconfig ${bad}: not valid YAML: `),
  );
  const scalar = await file('scalar.yaml', 'just a string\n');
  await rejectsWith(
    () => loadKubeConfig(scalar, isolated(dir)),
    /: not a kubeconfig: expected a mapping at the top level$/,
  );
  const list = await file('list.yaml', 'clusters: {name: c}\n');
  await rejectsWith(() => loadKubeConfig(list, isolated(dir)), /: clusters: expected a list$/);
  const unnamed = await file('unnamed.yaml', 'users:\n- user: {token: t}\n');
  await rejectsWith(() => loadKubeConfig(unnamed, isolated(dir)), /: users\[0\]: expected a name$/);
  const port = await file('port.yaml', config({ server: 6443 }));
  await rejectsWith(
    () => loadKubeConfig(port, isolated(dir)),
    /: cluster "c": server is not a string$/,
  );
  const noServer = await file('noserver.yaml', config({ server: '' }));
  await rejectsWith(() => loadKubeConfig(noServer, isolated(dir)), /: cluster "c" has no server$/);
  const empty = await file('empty.yaml', '');
  await rejectsWith(
    () => loadKubeConfig(empty, isolated(dir)),
    /^no cluster configured: pass --kubeconfig, set KUBECONFIG, or run inside a cluster$/,
  );
  await rejectsWith(
    () => loadKubeConfig(undefined, isolated(dir)),
    /^no cluster configured: pass --kubeconfig, set KUBECONFIG, or run inside a cluster$/,
  );
  const missing = [join(dir, 'm1'), join(dir, 'm2')].join(delimiter);
  await rejectsWith(
    () => loadKubeConfig(undefined, isolated(dir, { KUBECONFIG: missing })),
    new RegExp(
      `^cannot load the kubeconfig ${missing}: none of the KUBECONFIG files exists \\(${join(dir, 'm1')}, ${join(dir, 'm2')}\\)$`,
    ),
  );
  await rejectsWith(
    () => loadKubeConfig(undefined, isolated(dir, { KUBECONFIG: [empty, bad].join(delimiter) })),
    new RegExp(`^cannot load the kubeconfig .*: ${bad}: not valid YAML: `),
  );
  const oidc = await file('oidc.yaml', config({}, { 'auth-provider': { name: 'oidc' } }));
  await rejectsWith(
    () => loadKubeConfig(oidc, isolated(dir)),
    /: user "u" uses the auth-provider "oidc", which is not supported: use an exec credential plugin/,
  );
  const proxy = await file('proxy.yaml', config({ 'proxy-url': 'http://proxy:3128' }));
  await rejectsWith(
    () => loadKubeConfig(proxy, isolated(dir)),
    /: cluster "c" sets proxy-url http:\/\/proxy:3128, which is not supported/,
  );
  const alpha = await file(
    'alpha.yaml',
    config({}, { exec: { apiVersion: 'client.authentication.k8s.io/v1alpha1', command: 'x' } }),
  );
  await rejectsWith(
    () => loadKubeConfig(alpha, isolated(dir)),
    /: user "u": exec: apiVersion client.authentication.k8s.io\/v1alpha1 is not supported/,
  );
  const noCommand = await file(
    'nocommand.yaml',
    config({}, { exec: { apiVersion: 'client.authentication.k8s.io/v1' } }),
  );
  await rejectsWith(
    () => loadKubeConfig(noCommand, isolated(dir)),
    /: user "u": exec has no command$/,
  );
  const always = await file(
    'always.yaml',
    config(
      {},
      {
        exec: {
          apiVersion: 'client.authentication.k8s.io/v1',
          command: 'login',
          interactiveMode: 'Always',
        },
      },
    ),
  );
  await rejectsWith(
    () => loadKubeConfig(always, isolated(dir)),
    /: user "u": the exec plugin login needs an interactive terminal/,
  );
  const noCa = await file('noca.yaml', config({ 'certificate-authority': 'missing-ca.crt' }));
  await rejectsWith(
    apply(loadKubeConfig(noCa, isolated(dir))),
    /^cannot read the certificate-authority of cluster "c": ENOENT/,
  );
  const noKey = await file('nokey.yaml', config({}, { 'client-key': '/nonexistent/key' }));
  await rejectsWith(
    apply(loadKubeConfig(noKey, isolated(dir))),
    /^cannot read the client-key of user "u": ENOENT/,
  );
});

test('KubeClient authenticates with the loaded kubeconfig', async (t) => {
  const dir = await tempDir(t);
  const seen: (string | undefined)[] = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization);
    res.setHeader('content-type', 'application/json');
    res.end('{"gitVersion":"v1.0.0"}');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  const address = server.address();
  assert.ok(address && typeof address === 'object');
  const path = join(dir, 'config');
  await writeFile(
    path,
    config({ server: `http://127.0.0.1:${String(address.port)}` }, { token: 'client-token' }),
  );
  const client = await KubeClient.create(loadKubeConfig(path, isolated(dir)));
  t.after(() => client.close());
  assert.deepEqual(await client.request('GET', '/version'), { gitVersion: 'v1.0.0' });
  assert.deepEqual(seen, ['Bearer client-token']);
});
