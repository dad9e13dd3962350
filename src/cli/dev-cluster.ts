import { Command, Option } from 'commander';
import { isIP } from 'node:net';
import { dirname, resolve } from 'node:path';
import {
  binaryPaths,
  cacheRoot,
  DEFAULT_POD_CIDR,
  defaultClusterDir,
  down,
  ensureBinaries,
  ensureKubelet,
  ensureHelm,
  liveState,
  readState,
  serve,
  up,
  writeNodeKubeconfig,
  writeNodeServingCertificate,
} from '../devcluster/index.js';
import { ensureJaeger } from '../devcluster/jaeger.js';
import { join } from 'node:path';
import { parsePort, shutdownSignal, type Io } from './util.js';

interface DirOptions {
  dir: string;
}

function dirOption(): Option {
  return new Option('--dir <dir>', 'directory of the dev cluster (pki, data, logs, kubeconfig)')
    .default(defaultClusterDir(), '$XDG_STATE_HOME/virtual-kubelet/dev-cluster')
    .argParser((d) => resolve(d));
}

interface ServicesFlags {
  services?: string;
  podCidr: string;
  /** False with `--no-approve-serving-csrs`. */
  approveServingCsrs: boolean;
}

function noApproveOption(): Option {
  return new Option(
    '--no-approve-serving-csrs',
    "leave every kubelet-serving CSR for kubectl certificate approve (by default, a node's own request for its names and addresses is approved at once)",
  );
}

function servicesOption(): Option {
  return new Option(
    '--services <node>',
    'also run kube-proxy (for the pods of virtual node <node>) and CoreDNS as kube-dns (10.96.0.10); ' +
      'needs root, one such cluster per host',
  );
}

function podCidrOption(): Option {
  return new Option('--pod-cidr <cidr>', "the pods' address range, for kube-proxy").default(
    DEFAULT_POD_CIDR,
  );
}

/** The command that re-runs this CLI (same node, same loader flags, same entry script). */
function selfCommand(args: string[]): [string, ...string[]] {
  return [process.execPath, ...process.execArgv, process.argv[1] ?? '', ...args];
}

export function devClusterCommand(io: Io): Command {
  const cmd = new Command('dev-cluster').description(
    'a real local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler)',
  );

  cmd
    .command('build')
    .description(
      'build the control-plane binaries, kube-proxy, CoreDNS and helm into the cache (done by up when needed)',
    )
    .option('--jaeger', 'also build Jaeger, the trace collector of the tracing tests', false)
    .option(
      '--kubelet',
      'also build the kubelet of the same release, which the CRI benchmark runs as a second node',
      false,
    )
    .action(async (opts: { jaeger: boolean; kubelet: boolean }) => {
      const bins = await ensureBinaries({ progress: io.err, services: true });
      // helm is not part of the cluster: the tests lint and render the chart with it.
      const helm = await ensureHelm({ progress: io.err });
      const jaeger = opts.jaeger ? await ensureJaeger({ progress: io.err }) : undefined;
      const kubelet = opts.kubelet ? await ensureKubelet({ progress: io.err }) : undefined;
      io.err(`binaries in ${cacheRoot()}`);
      io.out(Object.values(bins).join('\n'));
      io.out(helm);
      if (jaeger) io.out(jaeger.binary);
      if (kubelet) io.out(kubelet);
    });

  cmd
    .command('up')
    .description('start the control plane in the background and print the KUBECONFIG line')
    .addOption(dirOption())
    .option('--port <port>', 'kube-apiserver port on 127.0.0.1 (default: a free port)', parsePort)
    .addOption(servicesOption())
    .addOption(podCidrOption())
    .addOption(noApproveOption())
    .action(async (opts: DirOptions & ServicesFlags & { port?: number }) => {
      const running = await liveState(opts.dir);
      if (!running) {
        const last = await readState(opts.dir);
        if (last?.status === 'failed')
          io.err(
            `the last dev cluster in ${opts.dir} stopped: ${last.error ?? 'no reason recorded'}`,
          );
      }
      if (running?.status !== 'ready')
        await ensureBinaries({ progress: io.err, services: opts.services !== undefined });
      io.err(running ? '' : `starting the dev cluster in ${opts.dir}`);
      const serveArgs = ['dev-cluster', 'serve', '--dir', opts.dir];
      if (opts.port !== undefined) serveArgs.push('--port', String(opts.port));
      if (opts.services !== undefined)
        serveArgs.push('--services', opts.services, '--pod-cidr', opts.podCidr);
      if (!opts.approveServingCsrs) serveArgs.push('--no-approve-serving-csrs');
      const { state, started } = await up({ dir: opts.dir, serveCommand: selfCommand(serveArgs) });
      io.err(
        started
          ? `dev cluster ready at ${state.server ?? '?'} (stop it with: virtual-kubelet dev-cluster down)`
          : `dev cluster already running at ${state.server ?? '?'} (pid ${String(state.pid)})`,
      );
      io.out(`export KUBECONFIG=${state.kubeconfig ?? ''}`);
      // The machine's own kubectl may be several minor versions older than the cluster.
      io.out(`export PATH=${dirname(binaryPaths().kubectl)}:$PATH`);
    });

  cmd
    .command('serve', { hidden: true })
    .description('run the control plane in the foreground (what up runs in the background)')
    .addOption(dirOption())
    .option('--port <port>', 'kube-apiserver port', parsePort)
    .addOption(servicesOption())
    .addOption(podCidrOption())
    .addOption(noApproveOption())
    .action(async (opts: DirOptions & ServicesFlags & { port?: number }) => {
      const signal = shutdownSignal(io);
      await serve({
        dir: opts.dir,
        binaries: binaryPaths(),
        ...(opts.port === undefined ? {} : { apiserverPort: opts.port }),
        ...(opts.services === undefined
          ? {}
          : { services: { nodeName: opts.services, podCidr: opts.podCidr } }),
        approveServingCsrs: opts.approveServingCsrs,
        log: io.err,
        signal,
      });
    });

  cmd
    .command('down')
    .description('stop the control plane started by up')
    .addOption(dirOption())
    .action(async (opts: DirOptions) => {
      const stopped = await down(opts.dir);
      io.err(
        stopped ? `dev cluster in ${opts.dir} stopped` : `no dev cluster running in ${opts.dir}`,
      );
    });

  cmd
    .command('status')
    .description('say whether the control plane runs; exit code 3 when it does not')
    .addOption(dirOption())
    .action(async (opts: DirOptions) => {
      const state = await liveState(opts.dir);
      if (!state) {
        const last = await readState(opts.dir);
        io.out(
          `no dev cluster running in ${opts.dir}` +
            (last?.status === 'failed' ? ` (last start failed: ${last.error ?? '?'})` : ''),
        );
        io.exitCode = 3;
        return;
      }
      io.out(`dev cluster in ${opts.dir}: ${state.status} (pid ${String(state.pid)})`);
      if (state.server) io.out(`  server: ${state.server}`);
      if (state.approvesServingCsrs !== undefined)
        io.out(
          `  kubelet-serving CSRs: ${state.approvesServingCsrs ? 'approved when they match their node' : 'left for kubectl certificate approve'}`,
        );
      for (const [name, pid] of Object.entries(state.components ?? {}))
        io.out(`  ${name}: pid ${String(pid)}`);
      if (state.kubeconfig) io.out(`export KUBECONFIG=${state.kubeconfig}`);
    });

  cmd
    .command('node-kubeconfig')
    .description(
      'write a kubeconfig with the identity of a kubelet (system:node:<name>) and print its path; ' +
        'also write a serving certificate for the node from the cluster CA (DIR/pki/node-<name>-serving.crt ' +
        'and .key, for --tls-cert-file and --tls-private-key-file). Or run the agent with ' +
        '--rotate-server-certificates: the dev cluster approves its CSR at once',
    )
    .addOption(dirOption())
    .requiredOption('--name <node>', 'node name')
    .option('--out <path>', 'where to write it (default: DIR/node-<name>.kubeconfig)')
    .option(
      '--node-ip <ip>',
      "the node's address in the serving certificate (the agent's --node-ip)",
      '127.0.0.1',
    )
    .action(async (opts: DirOptions & { name: string; out?: string; nodeIp: string }) => {
      if (isIP(opts.nodeIp) === 0) {
        io.err(`--node-ip: ${opts.nodeIp} is not an IP address`);
        io.exitCode = 1;
        return;
      }
      const state = await liveState(opts.dir);
      if (!state?.server) {
        io.err(`no dev cluster running in ${opts.dir}: run dev-cluster up first`);
        io.exitCode = 1;
        return;
      }
      const path = await writeNodeKubeconfig({
        pkiDir: join(opts.dir, 'pki'),
        server: state.server,
        nodeName: opts.name,
        path: resolve(opts.out ?? join(opts.dir, `node-${opts.name}.kubeconfig`)),
      });
      const serving = await writeNodeServingCertificate({
        pkiDir: join(opts.dir, 'pki'),
        nodeName: opts.name,
        ips: [opts.nodeIp],
      });
      io.out(path);
      io.err(
        `serving certificate for ${opts.name}: --tls-cert-file ${serving.certFile} --tls-private-key-file ${serving.keyFile}`,
      );
    });

  return cmd;
}
