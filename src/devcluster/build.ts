import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DevClusterError } from './errors.js';
import { acquireLock } from './lock.js';
import { cacheRoot, modulesDir } from './paths.js';
import {
  COREDNS_VERSION,
  ETCD_VERSION,
  KUBERNETES_VERSION,
  METRICS_SERVER_VERSION,
} from './versions.js';

/** Absolute paths of the control-plane binaries. */
export interface Binaries {
  readonly etcd: string;
  readonly kubeApiserver: string;
  readonly kubeControllerManager: string;
  readonly kubeScheduler: string;
  readonly kubectl: string;
  readonly metricsServer: string;
  /** Built only when asked for (`services`): the cluster runs it for a pod network. */
  readonly kubeProxy: string;
  /** Built only when asked for (`services`): the cluster's DNS server (kube-dns). */
  readonly coredns: string;
}

export interface BuildOptions {
  /** Cache root. Default: {@link cacheRoot}. */
  readonly cacheDir?: string;
  /** Receives one human-readable progress line at a time. Default: discard. */
  readonly progress?: (line: string) => void;
  /** Seconds between "still compiling" lines. Default: 15. */
  readonly progressIntervalSeconds?: number;
  /** `go build -p`. Default: 2 (the machines this runs on have two cores). */
  readonly parallelism?: number;
  /** The Go command. Default: `go` from PATH. */
  readonly goBinary?: string;
  /**
   * Also build kube-proxy and CoreDNS, which a cluster with `services` runs (the control plane
   * alone does not need them). Default: false.
   */
  readonly services?: boolean;
  readonly signal?: AbortSignal;
}

interface Target {
  /** Binary name on disk. */
  readonly name: string;
  /** Go package to build. */
  readonly pkg: string;
}

interface ModuleBuild {
  /** Folder below `modules/` holding go.mod and go.sum. */
  readonly module: string;
  /** Absolute folder holding go.mod and go.sum; when set, `module` only names the build. */
  readonly moduleDir?: string;
  /** Cache subfolder, e.g. `k8s-v1.37.2`. */
  readonly dirName: string;
  readonly tags: readonly string[];
  readonly ldflags: readonly string[];
  readonly targets: readonly Target[];
}

function kubernetesBuild(): ModuleBuild {
  const v = KUBERNETES_VERSION;
  return {
    module: 'kubernetes',
    dirName: `k8s-${v}`,
    tags: ['selinux', 'notest', 'grpcnotrace'],
    ldflags: kubernetesLdflags(),
    targets: ['kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kubectl'].map(
      (name) => ({ name, pkg: `k8s.io/kubernetes/cmd/${name}` }),
    ),
  };
}

/**
 * kube-proxy from the same k8s.io/kubernetes release, in a module of its own (the control
 * plane's modules plus the netfilter libraries it needs), so adding it leaves the control
 * plane's build and cache as they are.
 */
function kubeProxyBuild(): ModuleBuild {
  return {
    module: 'kube-proxy',
    dirName: `kube-proxy-${KUBERNETES_VERSION}`,
    tags: ['selinux', 'notest', 'grpcnotrace'],
    ldflags: kubernetesLdflags(),
    targets: [{ name: 'kube-proxy', pkg: 'k8s.io/kubernetes/cmd/kube-proxy' }],
  };
}

/**
 * The kubelet of the same k8s.io/kubernetes release, in a module of its own (the control plane's
 * modules plus what the kubelet needs). Only the CRI benchmark runs it, as a second node next to
 * the cri provider; nothing else builds it.
 */
function kubeletBuild(): ModuleBuild {
  return {
    module: 'kubelet',
    dirName: `kubelet-${KUBERNETES_VERSION}`,
    tags: ['selinux', 'notest', 'grpcnotrace'],
    ldflags: kubernetesLdflags(),
    targets: [{ name: 'kubelet', pkg: 'k8s.io/kubernetes/cmd/kubelet' }],
  };
}

function corednsBuild(): ModuleBuild {
  return {
    module: 'coredns',
    dirName: `coredns-${COREDNS_VERSION}`,
    tags: [],
    ldflags: ['-s', '-w'],
    targets: [{ name: 'coredns', pkg: 'github.com/coredns/coredns' }],
  };
}

/** Version stamps a Kubernetes binary reports (`kubectl version`, `/version`). */
function kubernetesLdflags(): string[] {
  const v = KUBERNETES_VERSION;
  const [major, minor] = v.slice(1).split('.');
  const stamp = (pkg: string): string[] => [
    `-X ${pkg}.gitVersion=${v}`,
    `-X ${pkg}.gitMajor=${major ?? ''}`,
    `-X ${pkg}.gitMinor=${minor ?? ''}`,
    `-X ${pkg}.gitTreeState=clean`,
  ];
  return [
    '-s',
    '-w',
    ...stamp('k8s.io/component-base/version'),
    ...stamp('k8s.io/client-go/pkg/version'),
  ];
}

function metricsServerBuild(): ModuleBuild {
  return {
    module: 'metrics-server',
    dirName: `metrics-server-${METRICS_SERVER_VERSION}`,
    tags: [],
    ldflags: ['-s', '-w'],
    targets: [{ name: 'metrics-server', pkg: 'sigs.k8s.io/metrics-server/cmd/metrics-server' }],
  };
}

function etcdBuild(): ModuleBuild {
  return {
    module: 'etcd',
    dirName: `etcd-${ETCD_VERSION}`,
    tags: [],
    ldflags: ['-s', '-w'],
    targets: [{ name: 'etcd', pkg: 'go.etcd.io/etcd/server/v3' }],
  };
}

/** Paths of the binaries in a cache, built or not. */
export function binaryPaths(cacheDir: string = cacheRoot()): Binaries {
  const k8s = join(cacheDir, kubernetesBuild().dirName, 'bin');
  return {
    etcd: join(cacheDir, etcdBuild().dirName, 'bin', 'etcd'),
    kubeApiserver: join(k8s, 'kube-apiserver'),
    kubeControllerManager: join(k8s, 'kube-controller-manager'),
    kubeScheduler: join(k8s, 'kube-scheduler'),
    kubectl: join(k8s, 'kubectl'),
    metricsServer: join(cacheDir, metricsServerBuild().dirName, 'bin', 'metrics-server'),
    kubeProxy: join(cacheDir, kubeProxyBuild().dirName, 'bin', 'kube-proxy'),
    coredns: join(cacheDir, corednsBuild().dirName, 'bin', 'coredns'),
  };
}

/**
 * Builds the control-plane binaries (and with `services`, kube-proxy and CoreDNS) into the cache
 * unless a build with the same inputs (go.mod,
 * go.sum, tags, flags, Go version) is already there. Safe to call from several processes at once:
 * one builds, the others wait for it. The first build takes many minutes; progress says which
 * component is compiling and for how long.
 */
export async function ensureBinaries(options: BuildOptions = {}): Promise<Binaries> {
  const cacheDir = options.cacheDir ?? cacheRoot();
  const say = options.progress ?? (() => undefined);
  const goVersion = await detectGo(options.goBinary ?? 'go');
  const started = Date.now();
  let built = false;
  const builds = [etcdBuild(), kubernetesBuild(), metricsServerBuild()];
  if (options.services) builds.push(kubeProxyBuild(), corednsBuild());
  for (const build of builds) {
    built = (await ensureModule(build, cacheDir, goVersion, options, say)) || built;
  }
  if (built) say(`control plane built in ${formatSeconds(Date.now() - started)}`);
  return binaryPaths(cacheDir);
}

/** Where {@link ensureKubelet} leaves the kubelet, built or not. */
export function kubeletPath(cacheDir: string = cacheRoot()): string {
  return join(cacheDir, kubeletBuild().dirName, 'bin', 'kubelet');
}

/**
 * Builds the kubelet (`k8s.io/kubernetes/cmd/kubelet` of {@link KUBERNETES_VERSION}) into the
 * cache unless the same build is there, as {@link ensureBinaries} builds the control plane: opt
 * in, since only the CRI benchmark needs it. Resolves to the binary's path.
 */
export async function ensureKubelet(options: BuildOptions = {}): Promise<string> {
  const cacheDir = options.cacheDir ?? cacheRoot();
  const say = options.progress ?? (() => undefined);
  const goVersion = await detectGo(options.goBinary ?? 'go');
  const started = Date.now();
  if (await ensureModule(kubeletBuild(), cacheDir, goVersion, options, say))
    say(`kubelet built in ${formatSeconds(Date.now() - started)}`);
  return kubeletPath(cacheDir);
}

/** A Go module of ours (a go.mod and go.sum pinning third-party commands) to build into the cache. */
export interface GoModuleBuild {
  /** Absolute folder holding go.mod and go.sum. */
  readonly moduleDir: string;
  /** Cache subfolder, e.g. `go-vk-v1.13.0`; the binaries land in `<cache>/<dirName>/bin/`. */
  readonly dirName: string;
  /** Binary name on disk and the Go package it is built from. */
  readonly targets: readonly { readonly name: string; readonly pkg: string }[];
  /** `go build -tags`. Default: none. */
  readonly tags?: readonly string[];
  /** `go build -ldflags`. Default: `-s -w`. */
  readonly ldflags?: readonly string[];
}

/** Where {@link ensureGoModuleBinaries} left the binaries. */
export interface GoModuleBinaries {
  /** Absolute path of each target, by name. */
  readonly paths: Readonly<Record<string, string>>;
  /** True when this call compiled them; false when the cache was current. */
  readonly built: boolean;
  /** Milliseconds this call took (waiting for another builder included). */
  readonly elapsedMs: number;
}

/**
 * Builds the targets of one Go module folder into the cache, exactly as {@link ensureBinaries}
 * builds the control plane: skipped when the stamp (go.mod, go.sum, tags, flags, Go version)
 * matches, one builder at a time across processes, progress lines while compiling.
 */
export async function ensureGoModuleBinaries(
  module: GoModuleBuild,
  options: BuildOptions = {},
): Promise<GoModuleBinaries> {
  const cacheDir = options.cacheDir ?? cacheRoot();
  const say = options.progress ?? (() => undefined);
  const started = Date.now();
  const goVersion = await detectGo(options.goBinary ?? 'go');
  const build: ModuleBuild = {
    module: module.dirName,
    moduleDir: module.moduleDir,
    dirName: module.dirName,
    tags: module.tags ?? [],
    ldflags: module.ldflags ?? ['-s', '-w'],
    targets: module.targets,
  };
  const built = await ensureModule(build, cacheDir, goVersion, options, say);
  const paths: Record<string, string> = {};
  for (const t of module.targets) paths[t.name] = join(cacheDir, module.dirName, 'bin', t.name);
  return { paths, built, elapsedMs: Date.now() - started };
}

async function detectGo(go: string): Promise<string> {
  try {
    const { stdout } = await run(go, ['env', 'GOVERSION']);
    return stdout.trim();
  } catch (err) {
    throw new DevClusterError(
      'GoMissing',
      `the Go toolchain (${go}) was not found: install Go 1.26 or newer and put it on PATH; it builds the local control plane`,
      { cause: err },
    );
  }
}

async function ensureModule(
  build: ModuleBuild,
  cacheDir: string,
  goVersion: string,
  options: BuildOptions,
  say: (line: string) => void,
): Promise<boolean> {
  const dir = join(cacheDir, build.dirName);
  const srcDir = build.moduleDir ?? fileURLToPath(new URL(`${build.module}/`, modulesDir));
  const goMod = await readFile(join(srcDir, 'go.mod'));
  const goSum = await readFile(join(srcDir, 'go.sum'));
  const key = createHash('sha256')
    .update(goMod)
    .update(goSum)
    .update(JSON.stringify([build.tags, build.ldflags, build.targets, goVersion]))
    .digest('hex');
  const stampPath = join(dir, 'stamp');
  if (await isCurrent(stampPath, key, dir, build)) return false;

  await mkdir(dir, { recursive: true });
  const release = await acquireLock(join(dir, '.lock'), options.signal, () => {
    say(`${build.dirName}: another process is building it, waiting`);
  });
  try {
    if (await isCurrent(stampPath, key, dir, build)) return false;
    const workDir = join(dir, 'module');
    await mkdir(workDir, { recursive: true });
    await copyFile(join(srcDir, 'go.mod'), join(workDir, 'go.mod'));
    await copyFile(join(srcDir, 'go.sum'), join(workDir, 'go.sum'));
    await mkdir(join(dir, 'bin'), { recursive: true });
    const logPath = join(dir, 'build.log');
    await rm(stampPath, { force: true });
    for (const target of build.targets) {
      await buildTarget(build, target, dir, workDir, logPath, options, say);
    }
    await writeFile(stampPath, key);
    return true;
  } finally {
    await release();
  }
}

async function isCurrent(
  stampPath: string,
  key: string,
  dir: string,
  build: ModuleBuild,
): Promise<boolean> {
  const stamp = await readFile(stampPath, 'utf8').catch(() => '');
  if (stamp !== key) return false;
  for (const t of build.targets) {
    const ok = await stat(join(dir, 'bin', t.name)).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!ok) return false;
  }
  return true;
}

async function buildTarget(
  build: ModuleBuild,
  target: Target,
  dir: string,
  workDir: string,
  logPath: string,
  options: BuildOptions,
  say: (line: string) => void,
): Promise<void> {
  const out = join(dir, 'bin', target.name);
  const tmp = `${out}.tmp`;
  const args = [
    'build',
    '-v',
    `-p=${options.parallelism ?? 2}`,
    '-trimpath',
    ...(build.tags.length > 0 ? [`-tags=${build.tags.join(',')}`] : []),
    `-ldflags=${build.ldflags.join(' ')}`,
    '-o',
    tmp,
    target.pkg,
  ];
  const started = Date.now();
  say(`building ${target.name} (${build.dirName}); log: ${logPath}`);
  const log = createWriteStream(logPath, { flags: 'a' });
  log.write(`\n$ go ${args.join(' ')}\n`);
  let packages = 0;
  const tick = setInterval(
    () => {
      say(
        `  ${target.name}: ${packages} packages compiled, ${formatSeconds(Date.now() - started)} elapsed`,
      );
    },
    (options.progressIntervalSeconds ?? 15) * 1000,
  );
  try {
    await new Promise<void>((resolve, reject) => {
      const child = spawn(options.goBinary ?? 'go', args, {
        cwd: workDir,
        // GOTOOLCHAIN=local: build with the installed Go, never download another toolchain.
        env: {
          ...process.env,
          CGO_ENABLED: '0',
          GOFLAGS: '-mod=readonly',
          GOWORK: 'off',
          GOTOOLCHAIN: 'local',
        },
        stdio: ['ignore', 'pipe', 'pipe'],
        signal: options.signal,
      });
      child.stdout.pipe(log, { end: false });
      child.stderr.on('data', (chunk: Buffer) => {
        log.write(chunk);
        // `go build -v` names each package as it is compiled.
        for (const ch of chunk) if (ch === 10) packages++;
      });
      child.on('error', reject);
      child.on('close', (code, signal) => {
        if (code === 0) resolve();
        else
          reject(
            new DevClusterError(
              options.signal?.aborted ? 'Aborted' : 'BuildFailed',
              `building ${target.name} failed (${signal ?? `exit code ${String(code)}`}): see ${logPath}`,
              { logPath },
            ),
          );
      });
    });
  } finally {
    clearInterval(tick);
    await new Promise<void>((resolve) => log.end(resolve));
  }
  await rename(tmp, out);
  say(`  ${target.name}: done in ${formatSeconds(Date.now() - started)}`);
}

/** `93.4 s` below two minutes, `4m07s` above. */
export function formatSeconds(ms: number): string {
  const s = ms / 1000;
  if (s < 120) return `${s.toFixed(1)} s`;
  const m = Math.floor(s / 60);
  return `${m}m${String(Math.round(s - m * 60)).padStart(2, '0')}s`;
}

function run(cmd: string, args: readonly string[]): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve({ stdout });
      else reject(new Error(`${cmd} exited with ${String(code)}`));
    });
  });
}
