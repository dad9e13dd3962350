import { Command } from 'commander';
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import {
  binaryPaths,
  defaultClusterDir,
  DevCluster,
  ensureBinaries,
  issueCert,
  liveState,
  writeNodeKubeconfig,
} from '../devcluster/index.js';
import { defaultRunOptions, runNode } from './run.js';
import { parentGoneSignal, shutdownSignal, type Io } from './util.js';

const NODE_NAME = 'vk-process';
const PROVIDER = 'process';

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
 */
export function startCommand(io: Io): Command {
  return new Command('start')
    .description('run the main job: a virtual node, on a local dev cluster when none is configured')
    .action(async () => {
      // Under `npm start` the parent is npm's shell, which does not pass SIGTERM on.
      const signal = AbortSignal.any([shutdownSignal(io), parentGoneSignal(io)]);
      const opts = {
        ...defaultRunOptions(io),
        nodename: NODE_NAME,
        nodeIp: '127.0.0.1',
        provider: PROVIDER,
      };
      if (clusterConfigured()) {
        io.err(`using the configured cluster (${process.env.KUBECONFIG ?? '~/.kube/config'})`);
        await runNode(opts, io, signal, () => {
          hints(io, process.env.KUBECONFIG);
        });
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
      if (!server) {
        io.err('no cluster configured: starting the local dev cluster');
        // kube-proxy and CoreDNS too, so the cache is ready for a cluster with services.
        const binaries = await ensureBinaries({ progress: io.err, services: true, signal });
        cluster = new DevCluster({ dir, binaries, metricsServer: true, log: io.err });
        const info = await cluster.start(signal);
        server = info.server;
        adminKubeconfig = info.adminKubeconfig;
      } else io.err(`using the dev cluster already running in ${dir}`);
      try {
        const pkiDir = join(dir, 'pki');
        const kubeconfig = await writeNodeKubeconfig({
          pkiDir,
          server,
          nodeName: NODE_NAME,
          path: join(dir, `node-${NODE_NAME}.kubeconfig`),
        });
        // A serving certificate from the cluster CA, so the API server trusts the kubelet API.
        await issueCert(pkiDir, {
          name: `serving-${NODE_NAME}`,
          cn: `system:node:${NODE_NAME}`,
          organizations: ['system:nodes'],
          usage: 'server',
          sans: ['IP:127.0.0.1', `DNS:${NODE_NAME}`],
        });
        const tls = {
          tlsCertFile: join(pkiDir, `serving-${NODE_NAME}.crt`),
          tlsPrivateKeyFile: join(pkiDir, `serving-${NODE_NAME}.key`),
        };
        await runNode({ ...opts, ...tls, kubeconfig }, io, signal, () => {
          hints(io, adminKubeconfig);
        });
      } finally {
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

function hints(io: Io, kubeconfig: string | undefined): void {
  const example = new URL('../../examples/process-deployment.yaml', import.meta.url).pathname;
  io.out(
    [
      '',
      `The virtual node ${NODE_NAME} is Ready; its containers run as local processes. In another terminal:`,
      ...(kubeconfig ? [`  export KUBECONFIG=${kubeconfig}`] : []),
      `  export PATH=${dirname(binaryPaths().kubectl)}:$PATH   # the kubectl of the cluster's version`,
      '  kubectl get nodes -o wide',
      `  kubectl run hello --image=busybox --restart=Never --overrides='${HELLO_OVERRIDES}' -- sh -c 'echo hello from a virtual node'`,
      '  kubectl logs hello',
      `  kubectl apply -f ${example}`,
      '  kubectl get pods -o wide',
      'Press Ctrl-C to stop (pods keep running; delete them with kubectl to stop them).',
      '',
    ].join('\n'),
  );
}
