// The frame every agent-comparing scenario runs in: Ctrl-C handling, the control plane and the
// peers built (or, for a smoke, only found), one dev cluster in a temporary directory (and a
// second, remote one for the kubernetes provider), an admin client of each without a rate limit,
// a serving certificate for the agents; all of it stopped and removed at the end however the
// scenario ends (the directory is kept when a run failed, for its logs).
import { setMaxListeners } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, totalmem, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureBinaries } from '../src/devcluster/build.js';
import { DevCluster, type ClusterInfo } from '../src/devcluster/cluster.js';
import { DevClusterError } from '../src/devcluster/errors.js';
import { issueCert } from '../src/devcluster/pki.js';
import { isAlive } from '../src/devcluster/process.js';
import { DevRuntime, type RuntimeInfo } from '../src/devcluster/runtime.js';
import { CriClient } from '../src/providers/cri/client.js';
import { ETCD_VERSION, KUBERNETES_VERSION } from '../src/devcluster/versions.js';
import { KubeClient, loadKubeConfig } from '../src/kube/client.js';
import { CRI_MAX_PODS } from './cri-kubelet.js';
import { NotBuiltError } from './peers.js';
import {
  type BenchContext,
  type BenchSystem,
  isSystemName,
  makeSystem,
  PROCESS_MAX_PODS,
  SYSTEM_NAMES,
  type SystemName,
  type SystemSettings,
} from './systems.js';
import { say } from './util.js';

export interface HarnessOptions {
  /** Build nothing: systems whose binaries are not in the cache are skipped. */
  readonly smoke: boolean;
  /** Pods each Node offers. */
  readonly podCapacity: number;
  /** Requests the harness's client keeps in flight at most (sizes its socket pool). */
  readonly concurrency: number;
  /** Prefix of the temporary directory. */
  readonly name: string;
  /**
   * Also start the dev runtime (containerd, the local registry with the test images) in the
   * directory, with the pause image pulled, for CRI systems; their pods run that image.
   * Default: false.
   */
  readonly runtime?: boolean;
  /**
   * Also start a second dev cluster (the remote one, in `<dir>/remote`) with an admin client of
   * it, for the kubernetes provider's scenarios. Default: false.
   */
  readonly remote?: boolean;
}

export interface Harness {
  readonly ctx: BenchContext;
  /** The systems that can run, in the order asked for. */
  readonly systems: readonly BenchSystem[];
  /** Systems skipped, with why. */
  readonly skipped: readonly string[];
  /** Aborts on Ctrl-C or SIGTERM. */
  readonly signal: AbortSignal;
  /** Keeps the directory (agent logs) when the harness stops. */
  readonly keepLogs: () => void;
}

/** `--systems a,b,c` as systems, or a message naming the unknown ones. */
export function parseSystems(
  list: string | readonly string[],
  settings: SystemSettings,
  allowed: readonly SystemName[] = SYSTEM_NAMES,
): BenchSystem[] | string {
  const names = typeof list === 'string' ? list.split(',').filter(Boolean) : [...list];
  const unknown = names.filter((s) => !isSystemName(s) || !allowed.includes(s));
  if (unknown.length > 0)
    return `unknown system(s) ${unknown.join(', ')}: choose from ${allowed.join(', ')}`;
  if (names.length === 0) return 'no system given';
  return (names as SystemName[]).map((name) => makeSystem(name, settings));
}

export const PROCESS_NETWORKS = ['cni', 'host', 'both'] as const;

/**
 * The systems a scenario runs, from `--systems`, `--provider`, `--process-network` and `--vs`:
 * `--provider process` runs ours with the process provider, with the pod network
 * (`ours-process-cni`), without it (`ours-process-host`) or both (`--process-network`, default
 * both); `--provider cri` runs ours with the cri provider (`ours-cri`), and with `--vs kubelet`
 * the real kubelet after it (`kubelet`), both on the same containerd; the default `--provider
 * mock` runs `--systems` (default `defaults`). Returns a message for a combination that makes no
 * sense, or when more than `maxPods` pods would be alive at once on a process-provider or CRI
 * node (`pods`; their pod CIDRs are /24s).
 */
export function resolveSystemNames(
  options: {
    readonly systems?: string;
    readonly provider?: string;
    readonly processNetwork?: string;
    readonly vs?: string;
  },
  defaults: string,
  pods: number,
): string[] | string {
  const provider = options.provider ?? 'mock';
  if (provider !== 'mock' && provider !== 'process' && provider !== 'cri')
    return `unknown provider '${provider}': choose mock, process or cri`;
  if (options.vs !== undefined && provider !== 'cri')
    return '--vs needs --provider cri (the peer runs on the same containerd)';
  let names: string[];
  if (provider === 'cri') {
    if (options.systems !== undefined)
      return '--provider cri picks its systems (ours-cri, and kubelet with --vs kubelet): give --vs instead of --systems';
    if (options.processNetwork !== undefined) return '--process-network needs --provider process';
    if (options.vs !== undefined && options.vs !== 'kubelet')
      return `--vs must be kubelet, not '${options.vs}'`;
    names = options.vs === 'kubelet' ? ['ours-cri', 'kubelet'] : ['ours-cri'];
    if (pods > CRI_MAX_PODS)
      return `a CRI node holds at most ${String(CRI_MAX_PODS)} pods at once (a /24 pod CIDR): ${String(pods)} asked for`;
    return names;
  }
  if (provider === 'process') {
    if (options.systems !== undefined)
      return '--provider process picks its systems (ours-process-cni, ours-process-host): give --process-network instead of --systems';
    const net = options.processNetwork ?? 'both';
    if (!(PROCESS_NETWORKS as readonly string[]).includes(net))
      return `--process-network must be one of ${PROCESS_NETWORKS.join(', ')}, not '${net}'`;
    names =
      net === 'both'
        ? ['ours-process-cni', 'ours-process-host']
        : [net === 'cni' ? 'ours-process-cni' : 'ours-process-host'];
  } else {
    if (options.processNetwork !== undefined) return '--process-network needs --provider process';
    names = (options.systems ?? defaults).split(',').filter(Boolean);
  }
  if (names.some((n) => n.startsWith('ours-process-')) && pods > PROCESS_MAX_PODS)
    return `the process provider's node holds at most ${String(PROCESS_MAX_PODS)} pods at once (a /24 pod CIDR): ${String(pods)} asked for`;
  return names;
}

/** What the result files record about where they were measured. */
export function machine(): object {
  return {
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

export const controlPlane = { kubernetes: KUBERNETES_VERSION, etcd: ETCD_VERSION };

export const controlPlaneLine = (): string =>
  `control plane: kube-apiserver ${KUBERNETES_VERSION}, etcd ${ETCD_VERSION}, on 127.0.0.1; ${String(cpus().length)} CPUs`;

/**
 * Runs `body` against a fresh dev cluster with the systems prepared, and stops everything it
 * started when `body` settles or on Ctrl-C (a second Ctrl-C exits at once; every agent and
 * control-plane process dies with this one anyway, see spawnOwned).
 */
export async function withHarness<T>(
  systems: readonly BenchSystem[],
  options: HarnessOptions,
  body: (h: Harness) => Promise<T>,
): Promise<T> {
  const stop = new AbortController();
  // Every request in flight listens on it.
  setMaxListeners(0, stop.signal);
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts === 1) {
      say('interrupted: stopping the agents and the cluster (again to kill at once)');
      stop.abort();
    } else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let dir: string | undefined;
  let cluster: DevCluster | undefined;
  let runtime: DevRuntime | undefined;
  let remote: DevCluster | undefined;
  const kept = { logs: false };
  try {
    const binaries = await ensureBinaries({ progress: say, signal: stop.signal });
    // Peers are built (first use only) before the cluster runs, so nothing competes with the
    // build; a smoke builds nothing.
    const skipped: string[] = [];
    const ready: BenchSystem[] = [];
    for (const system of systems) {
      try {
        await system.prepare(say, { build: !options.smoke, signal: stop.signal });
        ready.push(system);
      } catch (err) {
        const why = err instanceof Error ? err.message : String(err);
        const cannot =
          err instanceof NotBuiltError ||
          (err instanceof DevClusterError && err.code !== 'Aborted');
        if (options.smoke && cannot) {
          say(`skipping ${system.name}: ${why}`);
          skipped.push(`${system.name}: ${why}`);
          continue;
        }
        throw err;
      }
    }
    await sweepStale();
    dir = await mkdtemp(join(tmpdir(), `vk-bench-${options.name}-`));
    await writeFile(join(dir, 'owner.pid'), String(process.pid));
    cluster = new DevCluster({
      dir,
      binaries,
      log: say,
      onComponentExit: (c, code, sig) => {
        say(`${c} exited (${sig ?? `code ${String(code)}`}) during the benchmark`);
      },
    });
    const info: ClusterInfo = await cluster.start(stop.signal);
    let runtimeInfo: RuntimeInfo | undefined;
    if (options.runtime) {
      runtime = new DevRuntime({
        dir: join(dir, 'runtime'),
        log: say,
        onComponentExit: (c, code, sig) => {
          say(`${c} exited (${sig ?? `code ${String(code)}`}) during the benchmark`);
        },
      });
      runtimeInfo = await runtime.start(stop.signal);
      await pullImage(runtimeInfo.runtimeEndpoint, runtimeInfo.images.pause);
    }
    let remoteInfo: ClusterInfo | undefined;
    if (options.remote) {
      remote = new DevCluster({
        dir: join(dir, 'remote'),
        binaries,
        log: (line) => {
          say(`remote: ${line}`);
        },
        onComponentExit: (c, code, sig) => {
          say(`remote ${c} exited (${sig ?? `code ${String(code)}`}) during the benchmark`);
        },
      });
      remoteInfo = await remote.start(stop.signal);
    }
    const adminClient = (path: string): Promise<KubeClient> =>
      KubeClient.create(loadKubeConfig(path), {
        qps: 1e6,
        burst: 1e6,
        maxSockets: options.concurrency * 2 + 8,
        userAgent: 'vk-bench',
      });
    const client = await adminClient(info.adminKubeconfig);
    let remoteClient: KubeClient | undefined;
    try {
      if (remoteInfo) remoteClient = await adminClient(remoteInfo.adminKubeconfig);
      await issueCert(info.pkiDir, {
        name: 'bench-serving',
        cn: 'vk-bench-kubelet',
        usage: 'server',
        sans: ['IP:127.0.0.1', 'DNS:localhost'],
      });
      const ctx: BenchContext = {
        info,
        client,
        dir,
        servingCert: {
          cert: join(info.pkiDir, 'bench-serving.crt'),
          key: join(info.pkiDir, 'bench-serving.key'),
        },
        podCapacity: options.podCapacity,
        say,
        ...(runtimeInfo ? { runtime: runtimeInfo, podImage: runtimeInfo.images.pause } : {}),
        ...(remoteInfo && remoteClient
          ? { remote: { info: remoteInfo, client: remoteClient } }
          : {}),
      };
      return await body({
        ctx,
        systems: ready,
        skipped,
        signal: stop.signal,
        keepLogs: () => {
          kept.logs = true;
        },
      });
    } finally {
      client.close();
      remoteClient?.close();
    }
  } finally {
    await runtime?.stop();
    await remote?.stop();
    await cluster?.stop();
    if (dir) {
      if (kept.logs) {
        await writeFile(join(dir, 'kept'), 'logs of a failed run, kept on purpose\n');
        say(`logs kept in ${dir}`);
      } else await rm(dir, { recursive: true, force: true });
    }
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** Pulls `image` into the runtime's store, so that no system's first pods pay for the pull. */
async function pullImage(runtimeEndpoint: string, image: string): Promise<void> {
  const cri = new CriClient({ runtimeEndpoint });
  try {
    await cri.image('PullImage', { image: { image } });
  } finally {
    cri.close();
  }
}

/**
 * Removes the directories of harnesses that died without cleaning up (SIGKILL); their processes
 * died with them. Directories kept for the logs of a failed run stay.
 */
async function sweepStale(): Promise<void> {
  const base = tmpdir();
  for (const name of await readdir(base).catch(() => [])) {
    if (!name.startsWith('vk-bench-')) continue;
    const dir = join(base, name);
    if (
      await stat(join(dir, 'kept')).then(
        () => true,
        () => false,
      )
    )
      continue;
    const owner = Number.parseInt(
      await readFile(join(dir, 'owner.pid'), 'utf8').catch(() => ''),
      10,
    );
    if (Number.isInteger(owner) && !isAlive(owner)) await rm(dir, { recursive: true, force: true });
  }
}
