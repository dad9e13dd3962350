import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import type { V1ConfigMap, V1Pod, V1Secret, V1Volume } from '../../../src/wire.js';
import type { ResolvedVolume } from '../../../src/provider.js';
import {
  podHasResolvedVolumes,
  volumeDigest,
  volumePathError,
  VolumeResolutionError,
  type TokenRequestSpec,
} from '../../../src/kubelet/volume-projection.js';
import { resolvePodVolumes, type VolumeSource } from '../../../src/pods/volumes.js';

const NS = 'apps';

/** An in-memory VolumeSource that counts its calls. */
class FakeSource implements VolumeSource {
  readonly configMaps = new Map<string, V1ConfigMap>();
  readonly secrets = new Map<string, V1Secret>();
  readonly calls: string[] = [];
  readonly tokens: TokenRequestSpec[] = [];

  configMap(name: string, data: Record<string, string>, binaryData?: Record<string, string>): this {
    this.configMaps.set(name, {
      metadata: { name, namespace: NS },
      data,
      ...(binaryData ? { binaryData } : {}),
    });
    return this;
  }

  /** Stores `data` base64-encoded, as the API server returns it. */
  secret(name: string, data: Record<string, string | Uint8Array>): this {
    const encoded = Object.fromEntries(
      Object.entries(data).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    );
    this.secrets.set(name, { metadata: { name, namespace: NS }, data: encoded });
    return this;
  }

  getConfigMap(namespace: string, name: string): Promise<V1ConfigMap | undefined> {
    this.calls.push(`configmap ${namespace}/${name}`);
    if (name === 'broken') return Promise.reject(new Error('etcd is on fire'));
    return Promise.resolve(this.configMaps.get(name));
  }

  getSecret(namespace: string, name: string): Promise<V1Secret | undefined> {
    this.calls.push(`secret ${namespace}/${name}`);
    return Promise.resolve(this.secrets.get(name));
  }

  getServiceAccountToken(pod: V1Pod, spec: TokenRequestSpec): Promise<string> {
    this.tokens.push(spec);
    if (spec.audience === 'refused') return Promise.reject(new Error('forbidden'));
    return Promise.resolve(`token-for-${pod.metadata?.name ?? ''}-${spec.audience ?? 'api'}`);
  }
}

function podWith(volumes: V1Volume[], extra: Partial<V1Pod['metadata']> = {}): V1Pod {
  return {
    metadata: { name: 'web', namespace: NS, uid: 'uid-1', ...extra },
    spec: {
      containers: [
        {
          name: 'app',
          image: 'busybox',
          resources: { limits: { cpu: '500m', memory: '128Mi' }, requests: { cpu: '250m' } },
        },
      ],
      serviceAccountName: 'builder',
      volumes,
    },
  };
}

/** `{ path: [text, mode] }` of one resolved volume, for readable assertions. */
function files(volume: ResolvedVolume | undefined): Record<string, [string, string]> {
  assert.ok(volume, 'the volume was resolved');
  return Object.fromEntries(
    volume.files.map((f) => [f.path, [Buffer.from(f.data).toString('utf8'), f.mode.toString(8)]]),
  );
}

async function rejectsWith(
  promise: Promise<unknown>,
  reason: string,
  message: string,
  retryable: boolean,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VolumeResolutionError, String(err));
    assert.equal(err.reason, reason);
    assert.equal(err.message, message);
    assert.equal(err.retryable, retryable);
    return true;
  });
}

test('a configMap volume without items has one file per key, data and binaryData, mode 0644', async () => {
  const source = new FakeSource().configMap(
    'cfg',
    { 'app.conf': 'port=80', 'b.txt': 'b' },
    { 'logo.bin': Buffer.from([0, 1, 255]).toString('base64') },
  );
  const [v] = await resolvePodVolumes(
    podWith([{ name: 'config', configMap: { name: 'cfg' } }]),
    source,
  );
  assert.equal(v?.name, 'config');
  assert.deepEqual(
    v?.files.map((f) => f.path),
    ['app.conf', 'b.txt', 'logo.bin'],
  );
  assert.deepEqual(files(v)['app.conf'], ['port=80', '644']);
  assert.deepEqual([...(v?.files[2]?.data ?? [])], [0, 1, 255]);
});

test('items pick keys, set paths (with directories) and modes; defaultMode applies to the rest', async () => {
  const source = new FakeSource().configMap('cfg', { a: 'A', b: 'B', c: 'C' });
  const [v] = await resolvePodVolumes(
    podWith([
      {
        name: 'config',
        configMap: {
          name: 'cfg',
          defaultMode: 0o440,
          items: [
            { key: 'a', path: 'conf/a.txt', mode: 0o600 },
            { key: 'b', path: 'b' },
          ],
        },
      },
    ]),
    source,
  );
  assert.deepEqual(files(v), { b: ['B', '440'], 'conf/a.txt': ['A', '600'] });
});

test('secret values are base64-decoded bytes', async () => {
  const source = new FakeSource().secret('creds', {
    password: 's3cr3t',
    raw: new Uint8Array([0xff, 0xfe]),
  });
  const [v] = await resolvePodVolumes(
    podWith([{ name: 'creds', secret: { secretName: 'creds', defaultMode: 0o400 } }]),
    source,
  );
  assert.deepEqual(files(v).password, ['s3cr3t', '400']);
  assert.deepEqual([...(v?.files.find((f) => f.path === 'raw')?.data ?? [])], [0xff, 0xfe]);
});

test('a missing non-optional object fails with the FailedMount message; retryable', async () => {
  const source = new FakeSource();
  await rejectsWith(
    resolvePodVolumes(podWith([{ name: 'cfg', configMap: { name: 'missing' } }]), source),
    'ObjectNotFound',
    'MountVolume.SetUp failed for volume "cfg" : configmap "missing" not found',
    true,
  );
  await rejectsWith(
    resolvePodVolumes(podWith([{ name: 's', secret: { secretName: 'nope' } }]), source),
    'ObjectNotFound',
    'MountVolume.SetUp failed for volume "s" : secret "nope" not found',
    true,
  );
});

test('an optional missing object gives an empty volume; an optional missing key is skipped', async () => {
  const source = new FakeSource().configMap('cfg', { a: 'A' });
  const volumes = await resolvePodVolumes(
    podWith([
      { name: 'gone', configMap: { name: 'missing', optional: true } },
      { name: 'gone-secret', secret: { secretName: 'missing', optional: true } },
      {
        name: 'partial',
        configMap: {
          name: 'cfg',
          optional: true,
          items: [
            { key: 'a', path: 'a' },
            { key: 'zz', path: 'zz' },
          ],
        },
      },
    ]),
    source,
  );
  assert.deepEqual(
    volumes.map((v) => [v.name, v.files.length]),
    [
      ['gone', 0],
      ['gone-secret', 0],
      ['partial', 1],
    ],
  );
});

test('a missing non-optional key fails, naming the key', async () => {
  const source = new FakeSource().configMap('cfg', { a: 'A' }).secret('s', { a: 'A' });
  await rejectsWith(
    resolvePodVolumes(
      podWith([{ name: 'v', configMap: { name: 'cfg', items: [{ key: 'zz', path: 'zz' }] } }]),
      source,
    ),
    'KeyNotFound',
    'MountVolume.SetUp failed for volume "v" : configmap references non-existent config key: zz',
    true,
  );
  await rejectsWith(
    resolvePodVolumes(
      podWith([{ name: 'v', secret: { secretName: 's', items: [{ key: 'k', path: 'k' }] } }]),
      source,
    ),
    'KeyNotFound',
    'MountVolume.SetUp failed for volume "v" : secret references non-existent secret key: k',
    true,
  );
});

test('a failing source is reported with the volume and is retryable', async () => {
  await rejectsWith(
    resolvePodVolumes(podWith([{ name: 'v', configMap: { name: 'broken' } }]), new FakeSource()),
    'SourceFailed',
    'MountVolume.SetUp failed for volume "v" : cannot read configmap "broken": etcd is on fire',
    true,
  );
});

test('downwardAPI: labels and annotations as sorted key="value" lines, metadata fields, resources with divisor', async () => {
  const pod = podWith(
    [
      {
        name: 'podinfo',
        downwardAPI: {
          defaultMode: 0o444,
          items: [
            { path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } },
            { path: 'annotations', fieldRef: { fieldPath: 'metadata.annotations' } },
            { path: 'name', fieldRef: { fieldPath: 'metadata.name' } },
            { path: 'ns', fieldRef: { fieldPath: 'metadata.namespace' } },
            { path: 'uid', fieldRef: { fieldPath: 'metadata.uid' }, mode: 0o400 },
            { path: 'tier', fieldRef: { fieldPath: "metadata.labels['tier']" } },
            {
              path: 'cpu_limit_m',
              resourceFieldRef: { containerName: 'app', resource: 'limits.cpu', divisor: '1m' },
            },
            {
              path: 'cpu_request',
              resourceFieldRef: { containerName: 'app', resource: 'requests.cpu' },
            },
            {
              path: 'mem_limit_mi',
              resourceFieldRef: { containerName: 'app', resource: 'limits.memory', divisor: '1Mi' },
            },
          ],
        },
      },
    ],
    {
      labels: { tier: 'front', app: 'web' },
      annotations: { 'note/quote': 'say "hi"\n' },
    },
  );
  const [v] = await resolvePodVolumes(pod, new FakeSource());
  assert.deepEqual(files(v), {
    annotations: ['note/quote="say \\"hi\\"\\n"', '444'],
    cpu_limit_m: ['500', '444'],
    cpu_request: ['1', '444'],
    labels: ['app="web"\ntier="front"', '444'],
    mem_limit_mi: ['128', '444'],
    name: ['web', '444'],
    ns: [NS, '444'],
    tier: ['front', '444'],
    uid: ['uid-1', '400'],
  });
});

test('downwardAPI: field paths that only env supports, or unknown containers, fail for good', async () => {
  for (const fieldPath of ['spec.nodeName', 'status.podIP', "metadata.name['x']"]) {
    await assert.rejects(
      resolvePodVolumes(
        podWith([{ name: 'd', downwardAPI: { items: [{ path: 'x', fieldRef: { fieldPath } }] } }]),
        new FakeSource(),
      ),
      (err: unknown) =>
        err instanceof VolumeResolutionError &&
        err.reason === 'InvalidFieldRef' &&
        !err.retryable &&
        err.message.includes(fieldPath),
    );
  }
  await assert.rejects(
    resolvePodVolumes(
      podWith([
        {
          name: 'd',
          downwardAPI: {
            items: [
              { path: 'x', resourceFieldRef: { containerName: 'ghost', resource: 'limits.cpu' } },
            ],
          },
        },
      ]),
      new FakeSource(),
    ),
    /volume "d" : downward API item "x": .*container "ghost" not found/,
  );
});

test('the kube-api-access projected volume: token, ca.crt and namespace, projected defaultMode', async () => {
  const source = new FakeSource().configMap('kube-root-ca.crt', { 'ca.crt': 'PEM' });
  const [v] = await resolvePodVolumes(
    podWith([
      {
        name: 'kube-api-access-x7k2p',
        projected: {
          defaultMode: 0o644,
          sources: [
            { serviceAccountToken: { expirationSeconds: 3607, path: 'token' } },
            {
              configMap: { name: 'kube-root-ca.crt', items: [{ key: 'ca.crt', path: 'ca.crt' }] },
            },
            {
              downwardAPI: {
                items: [{ path: 'namespace', fieldRef: { fieldPath: 'metadata.namespace' } }],
              },
            },
          ],
        },
      },
    ]),
    source,
  );
  assert.deepEqual(files(v), {
    'ca.crt': ['PEM', '644'],
    namespace: [NS, '644'],
    token: ['token-for-web-api', '644'],
  });
  assert.deepEqual(source.tokens, [
    { serviceAccountName: 'builder', audience: undefined, expirationSeconds: 3607 },
  ]);
});

test('projected: defaultMode for every source, item modes, audience and default expiration', async () => {
  const source = new FakeSource().configMap('cfg', { a: 'A' }).secret('s', { k: 'K' });
  const [v] = await resolvePodVolumes(
    podWith([
      {
        name: 'all',
        projected: {
          defaultMode: 0o600,
          sources: [
            { configMap: { name: 'cfg' } },
            { secret: { name: 's', items: [{ key: 'k', path: 'sec/k', mode: 0o400 }] } },
            { secret: { name: 'absent', optional: true } },
            { serviceAccountToken: { audience: 'vault', path: 'vault-token' } },
          ],
        },
      },
    ]),
    source,
  );
  assert.deepEqual(files(v), {
    a: ['A', '600'],
    'sec/k': ['K', '400'],
    'vault-token': ['token-for-web-vault', '600'],
  });
  assert.deepEqual(source.tokens, [
    { serviceAccountName: 'builder', audience: 'vault', expirationSeconds: 3600 },
  ]);
});

test('projected: a token that cannot be had, a short expiration, clusterTrustBundle', async () => {
  const projected = (sources: NonNullable<V1Volume['projected']>['sources']): V1Pod =>
    podWith([{ name: 'p', projected: { sources } }]);
  await rejectsWith(
    resolvePodVolumes(
      projected([{ serviceAccountToken: { audience: 'refused', path: 't' } }]),
      new FakeSource(),
    ),
    'SourceFailed',
    'MountVolume.SetUp failed for volume "p" : failed to fetch token: forbidden',
    true,
  );
  await rejectsWith(
    resolvePodVolumes(
      projected([{ serviceAccountToken: { expirationSeconds: 60, path: 't' } }]),
      new FakeSource(),
    ),
    'InvalidSpec',
    'MountVolume.SetUp failed for volume "p" : serviceAccountToken expirationSeconds 60 is below the minimum of 600',
    false,
  );
  await rejectsWith(
    resolvePodVolumes(
      projected([{ clusterTrustBundle: { signerName: 'x/y', path: 'ca.pem' } }]),
      new FakeSource(),
    ),
    'Unsupported',
    'MountVolume.SetUp failed for volume "p" : clusterTrustBundle projections are not supported by this node',
    false,
  );
});

test('fsGroup adds group read to every file; a shared runAsUser or an fsGroup makes the token 0600/0640', async () => {
  const source = new FakeSource().configMap('cfg', { a: 'A' });
  const volumes: V1Volume[] = [
    { name: 'cfg', configMap: { name: 'cfg', defaultMode: 0o400 } },
    {
      name: 'sa',
      projected: {
        defaultMode: 0o644,
        sources: [{ serviceAccountToken: { path: 'token' } }],
      },
    },
  ];
  const modes = async (securityContext: NonNullable<V1Pod['spec']>['securityContext']) => {
    const pod = podWith(volumes);
    if (pod.spec) pod.spec.securityContext = securityContext;
    const out = await resolvePodVolumes(pod, source);
    return out.map((v) => v.files.map((f) => `${f.path}:${f.mode.toString(8)}`)).flat();
  };
  assert.deepEqual(await modes(undefined), ['a:400', 'token:644']);
  assert.deepEqual(await modes({ runAsUser: 1000 }), ['a:400', 'token:600']);
  assert.deepEqual(await modes({ fsGroup: 2000 }), ['a:440', 'token:640']);
});

test('objects are read once per resolution, however many volumes use them', async () => {
  const source = new FakeSource().configMap('cfg', { a: 'A' });
  await resolvePodVolumes(
    podWith([
      { name: 'one', configMap: { name: 'cfg' } },
      { name: 'two', projected: { sources: [{ configMap: { name: 'cfg' } }] } },
    ]),
    source,
  );
  assert.deepEqual(source.calls, [`configmap ${NS}/cfg`]);
});

test('paths are validated like the API server and the atomic writer do', async () => {
  assert.equal(volumePathError('a/b.txt'), undefined);
  assert.equal(volumePathError('..a'), "must not start with '..'");
  assert.equal(volumePathError('/etc/passwd'), 'must be a relative path');
  assert.equal(volumePathError('a/../../b'), "must not contain '..'");
  assert.equal(volumePathError(''), 'must not be empty');
  assert.match(volumePathError(`${'x'.repeat(256)}/a`) ?? '', /longer than 255/);
  assert.match(volumePathError('x'.repeat(4097)) ?? '', /longer than 4096/);

  const source = new FakeSource().configMap('cfg', { a: 'A', b: 'B' });
  const withItems = (items: { key: string; path: string }[]): V1Pod =>
    podWith([{ name: 'v', configMap: { name: 'cfg', items } }]);
  await rejectsWith(
    resolvePodVolumes(withItems([{ key: 'a', path: '../escape' }]), source),
    'InvalidPath',
    `MountVolume.SetUp failed for volume "v" : invalid path "../escape": must not start with '..'`,
    false,
  );
  await rejectsWith(
    resolvePodVolumes(withItems([{ key: 'a', path: '/abs' }]), source),
    'InvalidPath',
    'MountVolume.SetUp failed for volume "v" : invalid path "/abs": must be a relative path',
    false,
  );
  await rejectsWith(
    resolvePodVolumes(
      withItems([
        { key: 'a', path: 'dir' },
        { key: 'b', path: 'dir/b' },
      ]),
      source,
    ),
    'InvalidPath',
    'MountVolume.SetUp failed for volume "v" : path "dir" is both a file and a directory',
    false,
  );
});

test('other volume types are left out; podHasResolvedVolumes tells whether there is work', async () => {
  const pod = podWith([
    { name: 'scratch', emptyDir: {} },
    { name: 'data', persistentVolumeClaim: { claimName: 'pvc' } },
  ]);
  assert.equal(podHasResolvedVolumes(pod), false);
  assert.deepEqual(await resolvePodVolumes(pod, new FakeSource()), []);
  assert.equal(podHasResolvedVolumes(podWith([{ name: 'd', downwardAPI: {} }])), true);
});

test('the digest changes with data, path or mode, and only then', () => {
  const v = (path: string, text: string, mode: number): ResolvedVolume => ({
    name: 'v',
    files: [{ path, data: Buffer.from(text), mode }],
  });
  const base = volumeDigest(v('a', 'x', 0o644));
  assert.equal(volumeDigest(v('a', 'x', 0o644)), base);
  assert.notEqual(volumeDigest(v('a', 'y', 0o644)), base);
  assert.notEqual(volumeDigest(v('b', 'x', 0o644)), base);
  assert.notEqual(volumeDigest(v('a', 'x', 0o600)), base);
  // Boundaries between files are part of the digest.
  assert.notEqual(
    volumeDigest({
      name: 'v',
      files: [
        { path: 'a', data: Buffer.from('bc'), mode: 1 },
        { path: 'd', data: Buffer.from(''), mode: 1 },
      ],
    }),
    volumeDigest({
      name: 'v',
      files: [
        { path: 'a', data: Buffer.from('b'), mode: 1 },
        { path: 'cd', data: Buffer.from(''), mode: 1 },
      ],
    }),
  );
});
