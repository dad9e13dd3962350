import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import {
  HELLO_OVERRIDES,
  hints,
  podNetworkOptions,
  START_POD_CIDR,
  START_SERVICES,
  startCommand,
  startCriConfig,
  startServices,
} from '../../../src/cli/start.js';
import { resolveServices } from '../../../src/devcluster/services.js';

test('npm start runs its dev cluster with services for vk-process, and the node with its DNS and pod CIDR', () => {
  assert.deepEqual(START_SERVICES, { nodeName: 'vk-process', podCidr: START_POD_CIDR });
  // The node's pod CIDR is kube-proxy's cluster CIDR: no traffic of a pod is masqueraded.
  assert.deepEqual(podNetworkOptions(resolveServices(START_SERVICES)), {
    podCidr: '10.244.0.0/24',
    clusterDns: ['10.96.0.10'],
    clusterDomain: 'cluster.local',
  });
});

test('a running dev cluster with services gives the node a /24 of its pod CIDR; one without, nothing', () => {
  // `dev-cluster up --services NODE` without --pod-cidr: kube-proxy's default 10.244.0.0/16.
  assert.deepEqual(podNetworkOptions(resolveServices({ nodeName: 'other' })), {
    podCidr: '10.244.0.0/24',
    clusterDns: ['10.96.0.10'],
    clusterDomain: 'cluster.local',
  });
  assert.equal(
    podNetworkOptions(resolveServices({ nodeName: 'n', podCidr: '10.214.1.0/26' })).podCidr,
    '10.214.1.0/26',
  );
  assert.deepEqual(podNetworkOptions(undefined), {});
});

test('the hints show a Service reached by name from another pod only when the cluster has services', () => {
  const withServices = hints('/k/admin.kubeconfig', true);
  const lines = withServices.split('\n');
  assert.ok(lines.includes('  export KUBECONFIG=/k/admin.kubeconfig'));
  const apply = lines.find((l) => l.includes('process-service.yaml')) ?? '';
  assert.match(apply, /^ {2}kubectl apply -f \/\S+\/examples\/process-service\.yaml /);
  assert.ok(
    lines.includes(
      `  kubectl run client --image=busybox --restart=Never --rm -i --overrides='${HELLO_OVERRIDES}' -- wget -qO- http://web:8080`,
    ),
  );
  const without = hints(undefined, false);
  assert.doesNotMatch(without, /process-service|wget|KUBECONFIG/);
  assert.match(without, /kubectl apply -f \S+\/examples\/process-deployment\.yaml/);
});

test('examples/process-service.yaml: two pods on the virtual node behind the Service web:8080', () => {
  const path = new URL('../../../examples/process-service.yaml', import.meta.url);
  const docs = parseAllDocuments(readFileSync(path, 'utf8')).map((d) => d.toJS() as Manifest);
  const deployment = docs.find((d) => d.kind === 'Deployment');
  const service = docs.find((d) => d.kind === 'Service');
  assert.equal(deployment?.metadata.name, 'web');
  assert.equal(deployment.spec.replicas, 2);
  const pod = deployment.spec.template?.spec;
  // The same placement as the hint's --overrides, so the client pod lands on the node too.
  const overrides = JSON.parse(HELLO_OVERRIDES) as { spec: Record<string, unknown> };
  assert.deepEqual(pod?.nodeSelector, overrides.spec.nodeSelector);
  assert.deepEqual(pod?.tolerations, overrides.spec.tolerations);
  assert.equal(pod?.containers?.[0]?.ports?.[0]?.containerPort, 8080);
  assert.equal(service?.metadata.name, 'web');
  assert.deepEqual(service.spec.selector, deployment.spec.template?.metadata?.labels);
  assert.deepEqual(service.spec.ports, [{ port: 8080, targetPort: 8080 }]);
});

interface Manifest {
  kind: string;
  metadata: { name: string };
  spec: {
    replicas?: number;
    selector?: Record<string, string>;
    ports?: unknown[];
    template?: {
      metadata?: { labels?: Record<string, string> };
      spec?: {
        nodeSelector?: unknown;
        tolerations?: unknown;
        containers?: { ports?: { containerPort: number }[] }[];
      };
    };
  };
}

test('the cri hints name the runtime, the test images of its registry and a bad image', () => {
  const text = hints('/k/admin.kubeconfig', false, {
    runtimeEndpoint: 'unix:///r/containerd.sock',
    registry: '127.0.0.1:5000',
    privateRegistry: '127.0.0.1:5001',
    credentials: { username: 'vk', password: 'p' },
    images: {
      busybox: '127.0.0.1:5000/busybox:v1',
      pause: '127.0.0.1:5000/pause:v1',
      server: '127.0.0.1:5000/server:v1',
    },
    privateImage: '127.0.0.1:5001/private/busybox:v1',
    cniNetwork: 'n',
    cniBridge: 'b',
    pids: {},
  });
  assert.match(
    text,
    /vk-cri is Ready; its pods run as containers in containerd \(unix:\/\/\/r\/containerd\.sock\)/,
  );
  assert.match(
    text,
    /kubectl run hello --image=127\.0\.0\.1:5000\/busybox:v1 .* -- cat \/etc\/os-release/,
  );
  assert.match(text, /--image=127\.0\.0\.1:5000\/no-such-image:v1/);
});

test('start --no-services: the dev cluster it starts runs without kube-proxy and CoreDNS, root or not', () => {
  const io = { out: () => undefined, err: () => undefined, exitCode: 0 };
  const parsed = (args: string[]): Record<string, unknown> => {
    const cmd = startCommand(io);
    cmd.parseOptions(args);
    return cmd.opts();
  };
  assert.deepEqual(parsed(['--provider', 'cri']), { provider: 'cri', services: true });
  assert.deepEqual(parsed(['--provider', 'cri', '--no-services']), {
    provider: 'cri',
    services: false,
  });
  assert.match(startCommand(io).helpInformation(), /--no-services +run the dev cluster it starts/);
  assert.deepEqual(startServices(true, true), {
    services: true,
    note: 'with kube-proxy and CoreDNS',
  });
  assert.deepEqual(startServices(false, true), {
    services: false,
    note: 'without services: not root',
  });
  for (const root of [true, false])
    assert.deepEqual(startServices(root, false), {
      services: false,
      note: 'without services: --no-services',
    });
});

test("the cri node of start keeps its state in the runtime's directory, not under /var/lib", () => {
  assert.deepEqual(
    startCriConfig(
      '/s/dev-runtime',
      'vk-cri',
      'unix:///s/dev-runtime/containerd.sock',
      START_POD_CIDR,
    ),
    {
      runtimeEndpoint: 'unix:///s/dev-runtime/containerd.sock',
      podCIDR: '10.244.0.0/24',
      stateDir: '/s/dev-runtime/nodes/vk-cri',
    },
  );
});
