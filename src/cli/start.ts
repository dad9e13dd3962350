import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  binaryPaths,
  defaultClusterDir,
  defaultRuntimeDir,
  DevRuntime,
  liveRuntimeState,
  type RuntimeInfo,
  DevCluster,
  DevClusterError,
  ensureBinaries,
  issueCert,
  liveState,
  writeNodeKubeconfig,
  type ServicesInfo,
} from '../devcluster/index.js';
import { removeHostState } from './registry.js';
import { defaultRunOptions, runNode } from './run.js';
import { parentGoneSignal, shutdownSignal, type Io } from './util.js';

const NODE_NAME = 'vk-process';
const PROVIDER = 'process';
/** The node of `npm start -- --provider cri`. */
const CRI_NODE_NAME = 'vk-cri';
/**
 * The pods' addresses when `npm start` brings the dev cluster up: kube-proxy's cluster CIDR and
 * the node's pod CIDR at once (one node).
 */
export const START_POD_CIDR = '10.244.0.0/24';

/** The services of the dev cluster `npm start` brings up: for the pods of its one node. */
export const START_SERVICES = { nodeName: NODE_NAME, podCidr: START_POD_CIDR } as const;

/** The options of the node that make its pods use a cluster's Services and DNS. */
export interface PodNetworkOptions {
  readonly podCidr: string;
  readonly clusterDns: string[];
  readonly clusterDomain: string;
}

/**
 * What the node needs from a dev cluster with services: `--cluster-dns` at the kube-dns
 * Service, its domain, and a pod CIDR inside kube-proxy's cluster CIDR (its first /24 when the
 * cluster's is larger; traffic from outside it would be masqueraded). Nothing without services.
 */
export function podNetworkOptions(services: ServicesInfo | undefined): Partial<PodNetworkOptions> {
  if (!services) return {};
  const [net = '', bits = '32'] = services.podCidr.split('/');
  return {
    podCidr: Number(bits) < 24 ? `${net}/24` : services.podCidr,
    clusterDns: [services.dnsIp],
    clusterDomain: services.clusterDomain,
  };
}

/**
 * Whether the dev cluster `start` brings up runs kube-proxy and CoreDNS (as root, unless
 * `--no-services`), and the words that say why not.
 */
export function startServices(
  root: boolean,
  wanted: boolean,
): { readonly services: boolean; readonly note: string } {
  if (!wanted) return { services: false, note: 'without services: --no-services' };
  if (!root) return { services: false, note: 'without services: not root' };
  return { services: true, note: 'with kube-proxy and CoreDNS' };
}

/**
 * The provider config of the cri node of `start`: its runtime, its pod CIDR, and its state (pod
 * files, container logs) in the runtime's directory rather than under /var/lib, so it goes where
 * the runtime goes.
 */
export function startCriConfig(
  runtimeDir: string,
  nodeName: string,
  runtimeEndpoint: string,
  podCidr: string,
): { readonly runtimeEndpoint: string; readonly podCIDR: string; readonly stateDir: string } {
  return { runtimeEndpoint, podCIDR: podCidr, stateDir: join(runtimeDir, 'nodes', nodeName) };
}

/** Whether the user has a cluster configured: a kubeconfig, or a pod's service account. */
export function clusterConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(
    env.KUBECONFIG || existsSync(join(homedir(), '.kube', 'config')) || env.KUBERNETES_SERVICE_HOST,
  );
}

/**
 * `npm start`: a virtual node named vk-process with the process provider (containers run as
 * local processes). Without a configured
 * cluster it first brings up the dev cluster (or uses the one `dev-cluster up` started) and runs
 * the node with a kubelet's identity in it. Ctrl-C stops everything it started.
 *
 * The dev cluster and the dev runtime it starts live in `$XDG_STATE_HOME/virtual-kubelet/` (else
 * `~/.local/state/virtual-kubelet/`), on free ports; kube-proxy's rules and CoreDNS's interface
 * are host-wide, one cluster with them per host (`--no-services` leaves them out).
 */
export function startCommand(io: Io): Command {
  return new Command('start')
    .description('run the main job: a virtual node, on a local dev cluster when none is configured')
    .option(
      '--provider <name>',
      'process (containers as local processes) or cri (real containers through the dev runtime)',
      PROVIDER,
    )
    .option(
      '--no-services',
      'run the dev cluster it starts without kube-proxy and CoreDNS (host-wide: one cluster with them per host)',
    )
    .action(async (flags: { provider: string; services: boolean }) => {
      if (flags.provider !== 'process' && flags.provider !== 'cri') {
        io.err(`virtual-kubelet: start: --provider must be process or cri, not ${flags.provider}`);
        io.exitCode = 2;
        return;
      }
      const cri = flags.provider === 'cri';
      const nodeName = cri ? CRI_NODE_NAME : NODE_NAME;
      // Under `npm start` the parent is npm's shell, which does not pass SIGTERM on.
      const signal = AbortSignal.any([shutdownSignal(io), parentGoneSignal(io)]);
      const baseOpts = {
        ...defaultRunOptions(io),
        nodename: nodeName,
        nodeIp: '127.0.0.1',
        provider: flags.provider,
      };
      // The cri node runs on the dev runtime: the one `dev-runtime up` started, or its own.
      let runtime: DevRuntime | undefined;
      let runtimeInfo: RuntimeInfo | undefined;
      let stateDir: string | undefined;
      const withRuntime = async (podCidr: string): Promise<typeof baseOpts> => {
        if (!cri) return baseOpts;
        const dir = defaultRuntimeDir();
        const live = await liveRuntimeState(dir);
        runtimeInfo = live?.status === 'ready' ? live.info : undefined;
        if (runtimeInfo) io.err(`using the dev runtime already running in ${dir}`);
        else {
          io.err(`starting the dev runtime (containerd, registries, test images) in ${dir}`);
          runtime = new DevRuntime({ dir, log: io.err });
          runtimeInfo = await runtime.start(signal);
        }
        const configPath = join(dir, `provider-${nodeName}.json`);
        const config = startCriConfig(dir, nodeName, runtimeInfo.runtimeEndpoint, podCidr);
        stateDir = config.stateDir;
        await mkdir(dir, { recursive: true });
        await writeFile(configPath, `${JSON.stringify(config, null, 2)}\n`);
        return { ...baseOpts, providerConfig: configPath };
      };
      const stopRuntime = async (): Promise<void> => {
        if (!runtime) return;
        io.err('stopping the dev runtime');
        await runtime.stop();
        // The node's pods went with it: their logs and files, and what the provider kept on the
        // host for them, go too.
        if (stateDir) await rm(stateDir, { recursive: true, force: true });
        removeHostState(flags.provider, nodeName);
      };
      if (clusterConfigured()) {
        io.err(`using the configured cluster (${process.env.KUBECONFIG ?? '~/.kube/config'})`);
        try {
          const opts = await withRuntime(START_POD_CIDR);
          await runNode(opts, io, signal, () => {
            io.out(hints(process.env.KUBECONFIG, false, runtimeInfo));
          });
        } finally {
          await stopRuntime();
        }
        return;
      }
      const dir = defaultClusterDir();
      let running = await liveState(dir);
      while (running?.status === 'starting') {
        io.err(`a dev cluster is starting in ${dir}: waiting for it`);
        await new Promise((r) => setTimeout(r, 1000));
        running = await liveState(dir);
      }
      let cluster: DevCluster | undefined;
      let server = running?.status === 'ready' ? running.server : undefined;
      let adminKubeconfig = running?.kubeconfig;
      let services: ServicesInfo | undefined = server ? running?.services : undefined;
      if (!server) {
        // kube-proxy's rules and CoreDNS's interface need root, as the pod network does.
        const plan = startServices(process.getuid?.() === 0, flags.services);
        io.err(
          plan.services
            ? `no cluster configured: starting the local dev cluster ${plan.note}`
            : `no cluster configured: starting the local dev cluster (${plan.note})`,
        );
        const binaries = await ensureBinaries({
          progress: io.err,
          services: flags.services,
          signal,
        });
        const options = { dir, binaries, metricsServer: true, log: io.err };
        const withServices = { ...options, services: { ...START_SERVICES, nodeName } };
        cluster = new DevCluster(plan.services ? withServices : options);
        const info = await cluster.start(signal).catch(async (err: unknown) => {
          // kube-proxy's rules are host-wide: one cluster with services per host. The node
          // still runs, its pods without cluster DNS.
          if (
            !(err instanceof DevClusterError) ||
            !/another dev cluster with services/.test(err.message)
          )
            throw err;
          io.err(`${err.message}; starting the dev cluster without services`);
          cluster = new DevCluster(options);
          return cluster.start(signal);
        });
        server = info.server;
        adminKubeconfig = info.adminKubeconfig;
        services = info.services;
      } else
        io.err(
          `using the dev cluster already running in ${dir}` +
            (services
              ? ' with its kube-proxy and CoreDNS'
              : ' (without services: pods get no cluster DNS)'),
        );
      const network = podNetworkOptions(services);
      try {
        const opts = await withRuntime(network.podCidr ?? START_POD_CIDR);
        const pkiDir = join(dir, 'pki');
        const kubeconfig = await writeNodeKubeconfig({
          pkiDir,
          server,
          nodeName,
          path: join(dir, `node-${nodeName}.kubeconfig`),
        });
        // A serving certificate from the cluster CA, so the API server trusts the kubelet API.
        await issueCert(pkiDir, {
          name: `serving-${nodeName}`,
          cn: `system:node:${nodeName}`,
          organizations: ['system:nodes'],
          usage: 'server',
          sans: ['IP:127.0.0.1', `DNS:${nodeName}`],
        });
        const tls = {
          tlsCertFile: join(pkiDir, `serving-${nodeName}.crt`),
          tlsPrivateKeyFile: join(pkiDir, `serving-${nodeName}.key`),
        };
        await runNode({ ...opts, ...network, ...tls, kubeconfig }, io, signal, () => {
          io.out(hints(adminKubeconfig, services !== undefined, runtimeInfo));
        });
      } finally {
        await stopRuntime();
        if (cluster) {
          io.err('stopping the dev cluster');
          await cluster.stop();
        }
      }
    });
}

/** The `kubectl run --overrides` of the printed hint: tolerate the taint, select virtual nodes. */
export const HELLO_OVERRIDES = JSON.stringify({
  spec: {
    nodeSelector: { type: 'virtual-kubelet' },
    tolerations: [{ key: 'virtual-kubelet.io/provider', operator: 'Exists', effect: 'NoSchedule' }],
  },
});

/**
 * What to try once the node is Ready; with `services`, a Service of two pods reached by name from
 * a third pod.
 */
export function hints(
  kubeconfig: string | undefined,
  services: boolean,
  runtime?: RuntimeInfo,
): string {
  const example = (name: string): string =>
    new URL(`../../examples/${name}`, import.meta.url).pathname;
  if (runtime) {
    const busybox = runtime.images.busybox;
    return [
      '',
      `The virtual node ${CRI_NODE_NAME} is Ready; its pods run as containers in containerd (${runtime.runtimeEndpoint}). In another terminal:`,
      ...(kubeconfig ? [`  export KUBECONFIG=${kubeconfig}`] : []),
      `  export PATH=${dirname(binaryPaths().kubectl)}:$PATH   # the kubectl of the cluster's version`,
      '  kubectl get nodes -o wide',
      `  kubectl run hello --image=${busybox} --restart=Never --overrides='${HELLO_OVERRIDES}' -- cat /etc/os-release`,
      "  kubectl logs hello   # the test image's os-release, not the host's",
      `  kubectl run shell --image=${busybox} --overrides='${HELLO_OVERRIDES}' -- sleep 3600`,
      '  kubectl exec shell -- cat /etc/os-release',
      `  kubectl run web --image=${runtime.images.server} --overrides='${HELLO_OVERRIDES}'   # an HTTP server on :8080`,
      '  kubectl get pods -o wide',
      `  kubectl run bad --image=${runtime.registry}/no-such-image:v1 --overrides='${HELLO_OVERRIDES}'   # ImagePullBackOff`,
      'Press Ctrl-C to stop (the dev runtime it started stops with it, and its containers with it).',
      '',
    ].join('\n');
  }
  return [
    '',
    `The virtual node ${NODE_NAME} is Ready; its containers run as local processes. In another terminal:`,
    ...(kubeconfig ? [`  export KUBECONFIG=${kubeconfig}`] : []),
    `  export PATH=${dirname(binaryPaths().kubectl)}:$PATH   # the kubectl of the cluster's version`,
    '  kubectl get nodes -o wide',
    `  kubectl run hello --image=busybox --restart=Never --overrides='${HELLO_OVERRIDES}' -- sh -c 'echo hello from a virtual node'`,
    '  kubectl logs hello',
    `  kubectl apply -f ${example('process-deployment.yaml')}`,
    '  kubectl get pods -o wide',
    ...(services
      ? [
          `  kubectl apply -f ${example('process-service.yaml')}   # Deployment and Service web`,
          `  kubectl run client --image=busybox --restart=Never --rm -i --overrides='${HELLO_OVERRIDES}' -- wget -qO- http://web:8080`,
        ]
      : []),
    'Press Ctrl-C to stop (pods keep running; delete them with kubectl to stop them).',
    '',
  ].join('\n');
}
