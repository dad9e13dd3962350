import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DEFAULT_REFLECTED_KINDS,
  parseKubernetesConfig,
} from '../../../../src/providers/kubernetes/config.js';
import {
  REFLECT_ANNOTATION,
  reflectionWanted,
  toRemoteService,
} from '../../../../src/providers/kubernetes/translate.js';
import type { KubeClient } from '../../../../src/kube/client.js';
import { silentLogger } from '../../../../src/log.js';
import type { ResolvedVolume } from '../../../../src/provider.js';
import { Reflector } from '../../../../src/providers/kubernetes/reflector.js';
import type { V1Pod, V1Service } from '../../../../src/wire.js';

const ctx = {
  config: parseKubernetesConfig({ kubeconfig: 'k', excludeLabelPrefixes: ['internal.example/'] }),
  nodeName: 'vk-1',
  remoteNamespace: 'remote-shop',
};

function service(spec: V1Service['spec']): V1Service {
  return {
    metadata: {
      namespace: 'shop',
      name: 'web',
      uid: 'u1',
      resourceVersion: '7',
      labels: { app: 'web', 'internal.example/x': 'y' },
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': '{}', note: 'n' },
    },
    spec,
    status: { loadBalancer: { ingress: [{ ip: '192.0.2.9' }] } },
  };
}

test('Services are reflected only on request: not in the default kinds, accepted in reflect', () => {
  assert.ok(!DEFAULT_REFLECTED_KINDS.includes('Service'));
  const config = parseKubernetesConfig({ kubeconfig: 'k', reflect: ['Service', 'ConfigMap'] });
  assert.deepEqual(config.reflect, ['Service', 'ConfigMap']);
  assert.throws(
    () => parseKubernetesConfig({ kubeconfig: 'k', reflect: ['Ingress'] }),
    /reflect\[\] must be one of ConfigMap, Secret, ServiceAccount, Service/,
  );
});

test('the reflect annotation opts an object out ("false") or in ("true"); otherwise the kind decides', () => {
  assert.equal(reflectionWanted(undefined, true), true);
  assert.equal(reflectionWanted({}, false), false);
  assert.equal(reflectionWanted({ [REFLECT_ANNOTATION]: 'false' }, true), false);
  assert.equal(reflectionWanted({ [REFLECT_ANNOTATION]: 'true' }, false), true);
  assert.equal(reflectionWanted({ [REFLECT_ANNOTATION]: 'maybe' }, false), false);
});

test('a LoadBalancer Service is reflected as ClusterIP without what the local cluster allocated', () => {
  const remote = toRemoteService(
    service({
      type: 'LoadBalancer',
      selector: { app: 'web' },
      clusterIP: '10.0.0.12',
      clusterIPs: ['10.0.0.12'],
      ipFamilies: ['IPv4'],
      ipFamilyPolicy: 'SingleStack',
      externalIPs: ['192.0.2.1'],
      healthCheckNodePort: 31000,
      externalTrafficPolicy: 'Local',
      loadBalancerIP: '192.0.2.9',
      sessionAffinity: 'ClientIP',
      ports: [{ name: 'http', port: 80, targetPort: 8080, nodePort: 30080, protocol: 'TCP' }],
    }),
    ctx,
  );
  assert.deepEqual(remote?.spec, {
    type: 'ClusterIP',
    selector: { app: 'web' },
    sessionAffinity: 'ClientIP',
    ports: [{ name: 'http', port: 80, targetPort: 8080, protocol: 'TCP' }],
  });
  assert.equal(remote?.status, undefined);
  assert.equal(remote?.metadata?.namespace, 'remote-shop');
  assert.equal(remote?.metadata?.resourceVersion, undefined);
  assert.deepEqual(remote?.metadata?.labels, {
    app: 'web',
    'virtual-kubelet.io/reflected': 'true',
    'virtual-kubelet.io/origin-node': 'vk-1',
  });
  assert.equal(remote?.metadata?.annotations?.note, 'n');
  assert.equal(remote?.metadata?.annotations?.['virtual-kubelet.io/origin-namespace'], 'shop');
  assert.equal(
    remote?.metadata?.annotations?.['kubectl.kubernetes.io/last-applied-configuration'],
    undefined,
  );
});

test('a headless Service stays headless; ExternalName is kept; a Service without selector is not reflected', () => {
  const headless = toRemoteService(
    service({ clusterIP: 'None', clusterIPs: ['None'], selector: { app: 'web' } }),
    ctx,
  );
  assert.equal(headless?.spec?.clusterIP, 'None');
  assert.equal(headless?.spec?.clusterIPs, undefined);
  const external = toRemoteService(
    service({ type: 'ExternalName', externalName: 'db.example.org' }),
    ctx,
  );
  assert.deepEqual(external?.spec, { type: 'ExternalName', externalName: 'db.example.org' });
  assert.equal(toRemoteService(service({ ports: [{ port: 443 }] }), ctx), undefined);
  assert.equal(toRemoteService(service({ selector: {}, ports: [{ port: 443 }] }), ctx), undefined);
});

/** A remote client that records writes; every object is new to it. */
function recordingClient(): { client: KubeClient; writes: string[] } {
  const writes: string[] = [];
  const client = {
    get: () => Promise.resolve(undefined),
    create: (path: string, body: { metadata?: { name?: string } }) => {
      writes.push(`create ${path}/${body.metadata?.name ?? ''}`);
      return Promise.resolve(body);
    },
    replace: (path: string) => {
      writes.push(`replace ${path}`);
      return Promise.resolve({});
    },
    delete: (path: string) => {
      writes.push(`delete ${path}`);
      return Promise.resolve({});
    },
  } as unknown as KubeClient;
  return { client, writes };
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

/** A volume of one file whose content came from the ConfigMap or Secret `object`. */
const sourcedVolume = (
  name: string,
  kind: 'ConfigMap' | 'Secret',
  object: string,
  annotations: Record<string, string>,
): ResolvedVolume => ({
  name,
  files: [{ path: 'k', data: bytes('v'), mode: 0o644 }],
  sources: [{ kind, name: object, annotations }],
});

test('a ConfigMap annotated reflect=false is not reflected, and its copy goes once it is', async () => {
  const { client, writes } = recordingClient();
  const reflector = new Reflector({
    client,
    nodeName: 'vk-1',
    config: parseKubernetesConfig({ kubeconfig: 'k' }),
    logger: silentLogger,
  });
  const pod: V1Pod = {
    metadata: { uid: 'p1' },
    spec: {
      containers: [],
      volumes: [
        { name: 'a', configMap: { name: 'open' } },
        { name: 'b', configMap: { name: 'closed' } },
      ],
    },
  };
  const volume = (name: string, cm: string, annotations: Record<string, string>) =>
    sourcedVolume(name, 'ConfigMap', cm, annotations);
  const signal = AbortSignal.timeout(10_000);
  await reflector.reflect(
    pod,
    'shop',
    [volume('a', 'open', {}), volume('b', 'closed', { [REFLECT_ANNOTATION]: 'false' })],
    signal,
  );
  assert.deepEqual(writes, ['create /api/v1/namespaces/shop/configmaps/open']);
  writes.length = 0;
  await reflector.reflect(
    pod,
    'shop',
    [volume('a', 'open', { [REFLECT_ANNOTATION]: 'false' })],
    signal,
  );
  assert.deepEqual(writes, ['delete /api/v1/namespaces/shop/configmaps/open']);
  assert.equal(reflector.holds('shop'), false);
});

test('a Secret annotated reflect=true is reflected although Secrets are not in reflect', async () => {
  const { client, writes } = recordingClient();
  const reflector = new Reflector({
    client,
    nodeName: 'vk-1',
    config: parseKubernetesConfig({ kubeconfig: 'k', reflect: ['ConfigMap'] }),
    logger: silentLogger,
  });
  const pod: V1Pod = {
    metadata: { uid: 'p1' },
    spec: {
      containers: [],
      volumes: [
        { name: 'a', secret: { secretName: 'plain' } },
        { name: 'b', secret: { secretName: 'asked' } },
      ],
    },
  };
  const volume = (name: string, secret: string, annotations: Record<string, string>) =>
    sourcedVolume(name, 'Secret', secret, annotations);
  await reflector.reflect(
    pod,
    'shop',
    [volume('a', 'plain', {}), volume('b', 'asked', { [REFLECT_ANNOTATION]: 'true' })],
    AbortSignal.timeout(10_000),
  );
  assert.deepEqual(writes, ['create /api/v1/namespaces/shop/secrets/asked']);
});
