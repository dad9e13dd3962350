/**
 * The local container runtime for the cri provider: containerd (with its CRI plugin) and runc
 * from the distribution, a plain-HTTP OCI registry on 127.0.0.1, a second one that requires a
 * password, and the test images pushed to both. Everything lives in one directory; the processes
 * are owned by the caller (see spawnOwned) and nothing outlives `stop()`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { freePorts } from './cluster.js';
import { DevClusterError } from './errors.js';
import {
  ensureTestImage,
  pushImage,
  TEST_IMAGE_NAMES,
  TEST_IMAGE_TAG,
  type RegistryCredentials,
  type TestImageName,
} from './images.js';
import { cacheRoot } from './paths.js';
import { isAlive, isAliveAs, spawnOwned, stopProcess } from './process.js';

const run = promisify(execFile);

/** The containerd namespace the CRI plugin keeps its pods in. */
export const CRI_NAMESPACE = 'k8s.io';

/** Directories searched for the CNI plugins (Debian's package, then the upstream default). */
const CNI_BIN_DIRS = ['/usr/lib/cni', '/opt/cni/bin'];

export type RuntimeComponent = 'containerd' | 'registry' | 'private-registry';

export interface DevRuntimeOptions {
  /** Working directory: containerd's root, state and socket, registry storage, logs. */
  readonly dir: string;
  /** Cache root for the built test images. Default: {@link cacheRoot}. */
  readonly cacheDir?: string;
  /** How long each component may take to answer. Default: 60 000 ms. */
  readonly componentTimeoutMs?: number;
  readonly log?: (line: string) => void;
  /** Called when a component exits before `stop()`. */
  readonly onComponentExit?: (
    component: RuntimeComponent,
    code: number | null,
    signal: NodeJS.Signals | null,
  ) => void;
}

/** What a started runtime offers. */
export interface RuntimeInfo {
  /** The CRI endpoint, `unix:///…/containerd.sock`. */
  readonly runtimeEndpoint: string;
  /** host:port of the registry without authentication. */
  readonly registry: string;
  /** host:port of the registry that requires {@link credentials}. */
  readonly privateRegistry: string;
  readonly credentials: RegistryCredentials;
  /** Image references by test image, in the open registry. */
  readonly images: Readonly<Record<TestImageName, string>>;
  /** The busybox image in the private registry. */
  readonly privateImage: string;
  /**
   * The CNI configuration template containerd fills with the pod CIDR the node reports through
   * the CRI's UpdateRuntimeConfig; its bridge and network names are this runtime's own.
   */
  readonly cniNetwork: string;
  readonly cniBridge: string;
  readonly pids: Readonly<Partial<Record<RuntimeComponent, number>>>;
}

function findCniBinDir(): string {
  for (const d of CNI_BIN_DIRS) if (existsSync(join(d, 'bridge'))) return d;
  throw new DevClusterError(
    'StartFailed',
    'no CNI plugins found in /usr/lib/cni or /opt/cni/bin: apt-get install containernetworking-plugins',
  );
}

function requireBinary(path: string, pkg: string): void {
  if (!existsSync(path))
    throw new DevClusterError('StartFailed', `${path} is missing: apt-get install ${pkg}`);
}

/** A bcrypt htpasswd line (the registry accepts nothing else), made with the system's crypt(3). */
async function htpasswdLine(credentials: RegistryCredentials): Promise<string> {
  const script =
    'import crypt,sys,warnings\nwarnings.simplefilter("ignore")\n' +
    'print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))';
  try {
    const { stdout } = await run('python3', ['-c', script, credentials.password]);
    const hash = stdout.trim();
    if (!hash.startsWith('$2')) throw new Error(`no bcrypt support (got ${hash.slice(0, 4)})`);
    return `${credentials.username}:${hash}\n`;
  } catch (err) {
    throw new DevClusterError(
      'StartFailed',
      `cannot make a bcrypt password for the private registry with python3: ${(err as Error).message}`,
      { cause: err },
    );
  }
}

/** The local runtime. `start()` once, then `stop()`. */
export class DevRuntime {
  readonly #o: DevRuntimeOptions;
  readonly #children = new Map<RuntimeComponent, ChildProcess>();
  #stopping = false;
  #info: RuntimeInfo | undefined;

  constructor(options: DevRuntimeOptions) {
    this.#o = options;
  }

  get info(): RuntimeInfo | undefined {
    return this.#info;
  }

  logPath(component: RuntimeComponent): string {
    return join(this.#o.dir, 'logs', `${component}.log`);
  }

  get socketPath(): string {
    return join(this.#o.dir, 'containerd.sock');
  }

  /** Starts the registries and containerd and pushes the test images. */
  async start(signal?: AbortSignal): Promise<RuntimeInfo> {
    const { dir } = this.#o;
    const log = this.#o.log ?? (() => undefined);
    requireBinary('/usr/bin/containerd', 'containerd');
    requireBinary('/usr/bin/docker-registry', 'docker-registry');
    const runc = ['/usr/sbin/runc', '/usr/bin/runc'].find((p) => existsSync(p));
    if (!runc) throw new DevClusterError('StartFailed', 'runc is missing: apt-get install runc');
    const cniBinDir = findCniBinDir();
    // containerd writes the CNI configuration from the template only when none is there: the
    // one of an earlier start names another bridge.
    await rm(join(dir, 'cni', 'net.d'), { recursive: true, force: true });
    for (const d of ['logs', 'root', 'state', 'cni/net.d', 'certs.d', 'registry', 'private'])
      await mkdir(join(dir, d), { recursive: true });

    const cacheDir = this.#o.cacheDir ?? cacheRoot();
    log('building the test images (cached)');
    const images = await Promise.all(TEST_IMAGE_NAMES.map((n) => ensureTestImage(n, cacheDir)));
    signal?.throwIfAborted();

    const [port, privatePort] = await freePorts(2);
    const registry = `127.0.0.1:${String(port)}`;
    const privateRegistry = `127.0.0.1:${String(privatePort)}`;
    const credentials = { username: 'vk', password: randomBytes(12).toString('hex') };
    await writeFile(join(dir, 'htpasswd'), await htpasswdLine(credentials));
    await this.#startRegistry('registry', registry, join(dir, 'registry'));
    await this.#startRegistry('private-registry', privateRegistry, join(dir, 'private'), true);
    await Promise.all([
      waitUntil(() => httpAnswers(`http://${registry}/v2/`), 'the registry', this.#timeout()),
      waitUntil(
        () => httpAnswers(`http://${privateRegistry}/v2/`),
        'the private registry',
        this.#timeout(),
      ),
    ]);
    const refs = {} as Record<TestImageName, string>;
    for (const image of images) {
      await pushImage(image, registry, image.name, TEST_IMAGE_TAG);
      refs[image.name] = `${registry}/${image.name}:${TEST_IMAGE_TAG}`;
    }
    const busybox = images.find((i) => i.name === 'busybox');
    if (busybox)
      await pushImage(busybox, privateRegistry, 'private/busybox', TEST_IMAGE_TAG, credentials);
    log(`registries on ${registry} and ${privateRegistry} (with a password)`);

    const id = randomBytes(3).toString('hex');
    const cniNetwork = `vk-cri-${id}`;
    const cniBridge = `vkcri${id}`;
    await writeFile(join(dir, 'cni-template.json'), cniTemplate(cniNetwork, cniBridge));
    for (const host of [registry, privateRegistry]) {
      await mkdir(join(dir, 'certs.d', host), { recursive: true });
      await writeFile(
        join(dir, 'certs.d', host, 'hosts.toml'),
        `server = "http://${host}"\n\n[host."http://${host}"]\n  capabilities = ["pull", "resolve"]\n`,
      );
    }
    await writeFile(
      join(dir, 'config.toml'),
      containerdConfig({ dir, runc, cniBinDir, sandboxImage: refs.pause }),
    );
    await rm(this.socketPath, { force: true });
    this.#spawn('containerd', '/usr/bin/containerd', ['--config', join(dir, 'config.toml')]);
    await waitUntil(() => socketAnswers(this.socketPath), 'containerd', this.#timeout());
    log(`containerd on ${this.socketPath}`);
    this.#info = {
      runtimeEndpoint: `unix://${this.socketPath}`,
      registry,
      privateRegistry,
      credentials,
      images: refs,
      privateImage: `${privateRegistry}/private/busybox:${TEST_IMAGE_TAG}`,
      cniNetwork,
      cniBridge,
      pids: Object.fromEntries([...this.#children].map(([n, c]) => [n, c.pid ?? 0])),
    };
    return this.#info;
  }

  /**
   * Removes every pod containerd still runs (tasks killed, containers deleted, network
   * namespaces unmounted), then stops containerd and the registries. Idempotent.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    const containerd = this.#children.get('containerd');
    if (containerd && containerd.exitCode === null && containerd.signalCode === null)
      await removeAllContainers(this.socketPath).catch((err: unknown) =>
        this.#o.log?.(`cleaning up containers: ${(err as Error).message}`),
      );
    await Promise.all([...this.#children.values()].map((c) => stopProcess(c, 10_000)));
    this.#children.clear();
    await killShims(this.socketPath);
    await unmountBelow(this.#o.dir);
    if (this.#info) {
      await run('ip', ['link', 'del', this.#info.cniBridge]).catch(() => undefined);
      await rm(join('/var/lib/cni/networks', this.#info.cniNetwork), {
        recursive: true,
        force: true,
      });
    }
  }

  #timeout(): number {
    return this.#o.componentTimeoutMs ?? 60_000;
  }

  async #startRegistry(
    name: RuntimeComponent,
    addr: string,
    storage: string,
    auth = false,
  ): Promise<void> {
    const config = [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${storage}`,
      'http:',
      `  addr: ${addr}`,
      ...(auth
        ? ['auth:', '  htpasswd:', '    realm: vk', `    path: ${join(this.#o.dir, 'htpasswd')}`]
        : []),
      '',
    ].join('\n');
    const path = join(this.#o.dir, `${name}.yml`);
    await writeFile(path, config);
    this.#spawn(name, '/usr/bin/docker-registry', ['serve', path]);
  }

  #spawn(name: RuntimeComponent, command: string, args: string[]): void {
    const child = spawnOwned(command, { args, logPath: this.logPath(name) });
    this.#children.set(name, child);
    child.once('exit', (code, sig) => {
      if (!this.#stopping) this.#o.onComponentExit?.(name, code, sig);
    });
  }
}

function cniTemplate(network: string, bridge: string): string {
  // containerd fills {{.PodCIDR}} when the node calls UpdateRuntimeConfig with its pod CIDR.
  return `${JSON.stringify(
    {
      cniVersion: '1.0.0',
      name: network,
      plugins: [
        {
          type: 'bridge',
          bridge,
          isGateway: true,
          ipMasq: false,
          hairpinMode: true,
          ipam: {
            type: 'host-local',
            ranges: [[{ subnet: '{{.PodCIDR}}' }]],
            routes: [{ dst: '0.0.0.0/0' }],
          },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  )}\n`;
}

function containerdConfig(o: {
  dir: string;
  runc: string;
  cniBinDir: string;
  sandboxImage: string;
}): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  return `version = 2
root = "${join(o.dir, 'root')}"
state = "${join(o.dir, 'state')}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "${join(o.dir, 'containerd.sock')}"

[ttrpc]
  address = "${join(o.dir, 'containerd.sock.ttrpc')}"

[metrics]
  address = ""

[${cri}]
  sandbox_image = "${o.sandboxImage}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # A negative oom_score_adj needs CAP_SYS_RESOURCE, which a containerized host may lack.
  restrict_oom_score_adj = true
  max_container_log_line_size = 16384

[${cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[${cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[${cri}.containerd.runtimes.runc.options]
  BinaryName = "${o.runc}"
  Root = "${join(o.dir, 'runc')}"
  SystemdCgroup = false

[${cri}.cni]
  bin_dir = "${o.cniBinDir}"
  conf_dir = "${join(o.dir, 'cni', 'net.d')}"
  conf_template = "${join(o.dir, 'cni-template.json')}"
  max_conf_num = 1

[${cri}.registry]
  config_path = "${join(o.dir, 'certs.d')}"
`;
}

async function waitUntil(
  check: () => Promise<boolean>,
  what: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new DevClusterError('StartFailed', `${what} did not answer within ${timeoutMs} ms`);
    await delay(100);
  }
}

async function httpAnswers(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.status === 200 || res.status === 401;
  } catch {
    return false;
  }
}

function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function ctr(socket: string, args: string[]): Promise<string> {
  const { stdout } = await run('ctr', ['--address', socket, '-n', CRI_NAMESPACE, ...args], {
    maxBuffer: 16 << 20,
  });
  return stdout;
}

/** Kills and deletes every container of the CRI namespace, and unmounts their network namespaces. */
async function removeAllContainers(socket: string): Promise<void> {
  const ids = (await ctr(socket, ['containers', 'ls', '-q'])).split('\n').filter(Boolean);
  const netns = new Set<string>();
  for (const id of ids) {
    try {
      const info = JSON.parse(await ctr(socket, ['containers', 'info', id])) as {
        Spec?: { linux?: { namespaces?: { type: string; path?: string }[] } };
      };
      for (const ns of info.Spec?.linux?.namespaces ?? [])
        if (ns.type === 'network' && ns.path) netns.add(ns.path);
    } catch {
      // Gone meanwhile.
    }
    await ctr(socket, ['tasks', 'kill', '-a', '-s', 'SIGKILL', id]).catch(() => undefined);
  }
  for (const id of ids) {
    for (let i = 0; i < 50; i++) {
      try {
        await ctr(socket, ['tasks', 'delete', '-f', id]);
        break;
      } catch (err) {
        if (String((err as { stderr?: string }).stderr).includes('not found')) break;
        await delay(100);
      }
    }
    await ctr(socket, ['containers', 'delete', id]).catch(() => undefined);
  }
  for (const path of netns) {
    await run('umount', [path]).catch(() => undefined);
    await rm(path, { force: true });
  }
}

/** Shims of this containerd that are still running (they are not its children). */
async function killShims(socket: string): Promise<void> {
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes('containerd-shim') && cmdline.includes(socket)) {
      try {
        process.kill(Number(entry), 'SIGKILL');
      } catch {
        // Exited meanwhile.
      }
    }
  }
}

/** Unmounts every mount below `dir`, deepest first. */
async function unmountBelow(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((p) => p.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
  for (const m of mounts) await run('umount', ['-l', m]).catch(() => undefined);
}

/** What `runtime.json` in a runtime directory says about the runtime that lives there. */
export interface RuntimeState {
  readonly status: 'starting' | 'ready' | 'failed' | 'stopped';
  /** Pid of the process that owns the components (`dev-runtime serve`). */
  readonly pid: number;
  readonly info?: RuntimeInfo;
  readonly error?: string;
  readonly updatedAt: string;
}

const runtimeStateFile = (dir: string): string => join(dir, 'runtime.json');

export async function readRuntimeState(dir: string): Promise<RuntimeState | undefined> {
  try {
    return JSON.parse(await readFile(runtimeStateFile(dir), 'utf8')) as RuntimeState;
  } catch {
    return undefined;
  }
}

async function writeRuntimeState(
  dir: string,
  state: Omit<RuntimeState, 'updatedAt'>,
): Promise<void> {
  const tmp = `${runtimeStateFile(dir)}.${String(process.pid)}`;
  await writeFile(tmp, JSON.stringify({ ...state, updatedAt: new Date().toISOString() }, null, 2));
  await rename(tmp, runtimeStateFile(dir));
}

/** The state, if its owner is alive and the runtime is up or coming up. */
export async function liveRuntimeState(dir: string): Promise<RuntimeState | undefined> {
  const state = await readRuntimeState(dir);
  if (!state || !isAliveAs(state.pid, 'dev-runtime')) return undefined;
  return state.status === 'ready' || state.status === 'starting' ? state : undefined;
}

/**
 * Runs the runtime in this process until `signal` aborts or a component dies, keeping
 * `runtime.json` current. Resolves after everything has stopped.
 */
export async function serveRuntime(options: {
  readonly dir: string;
  readonly log: (line: string) => void;
  readonly signal: AbortSignal;
}): Promise<void> {
  const { dir, log, signal } = options;
  await mkdir(dir, { recursive: true });
  await writeRuntimeState(dir, { status: 'starting', pid: process.pid });
  const died = new AbortController();
  let death = '';
  const runtime = new DevRuntime({
    dir,
    log,
    onComponentExit: (component, code, sig) => {
      death = `${component} exited unexpectedly (${sig ?? `code ${String(code)}`}); log: ${runtime.logPath(component)}`;
      died.abort();
    },
  });
  const both = AbortSignal.any([signal, died.signal]);
  try {
    const info = await runtime.start(both);
    await writeRuntimeState(dir, { status: 'ready', pid: process.pid, info });
    await new Promise<void>((resolve) => {
      if (both.aborted) resolve();
      else both.addEventListener('abort', () => resolve(), { once: true });
    });
    if (death) throw new DevClusterError('StartFailed', death);
  } catch (err) {
    await runtime.stop();
    const error = death ? new DevClusterError('StartFailed', death) : err;
    await writeRuntimeState(dir, {
      status: 'failed',
      pid: process.pid,
      error: (error as Error).message,
    });
    throw error;
  }
  log('stopping the runtime');
  await runtime.stop();
  await writeRuntimeState(dir, { status: 'stopped', pid: process.pid });
}

/**
 * Starts the runtime owned by a new background process (`serveCommand`) and waits until it is
 * ready; returns the running one's state if there is one.
 */
export async function runtimeUp(options: {
  readonly dir: string;
  readonly serveCommand: readonly [string, ...string[]];
  /** Default: 300 000 ms (the first start builds the test images). */
  readonly timeoutMs?: number;
}): Promise<{ state: RuntimeState; started: boolean }> {
  const { dir } = options;
  const existing = await liveRuntimeState(dir);
  if (existing?.status === 'ready') return { state: existing, started: false };
  if (existing)
    throw new DevClusterError(
      'StartFailed',
      `a runtime in ${dir} is still starting (pid ${String(existing.pid)}); wait, or run dev-runtime down`,
    );
  await mkdir(join(dir, 'logs'), { recursive: true });
  const logPath = join(dir, 'logs', 'supervisor.log');
  const logFile = await open(logPath, 'a');
  const [cmd, ...args] = options.serveCommand;
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', logFile.fd, logFile.fd] });
  await logFile.close();
  child.unref();
  const pid = child.pid ?? 0;
  const deadline = Date.now() + (options.timeoutMs ?? 300_000);
  for (;;) {
    await delay(200);
    const state = await readRuntimeState(dir);
    if (state?.pid === pid && state.status === 'ready') return { state, started: true };
    if (state?.pid === pid && state.status === 'failed')
      throw new DevClusterError('StartFailed', state.error ?? 'the runtime failed to start', {
        logPath,
      });
    if (!isAlive(pid))
      throw new DevClusterError('StartFailed', `the runtime process exited; see ${logPath}`, {
        logPath,
      });
    if (Date.now() > deadline) {
      process.kill(pid, 'SIGTERM');
      throw new DevClusterError(
        'StartFailed',
        `the runtime did not start in time; see ${logPath}`,
        {
          logPath,
        },
      );
    }
  }
}

/** Stops the runtime in `dir` and waits for its owner to exit. False when none was running. */
export async function runtimeDown(dir: string, timeoutMs = 60_000): Promise<boolean> {
  const state = await readRuntimeState(dir);
  if (!state || !isAliveAs(state.pid, 'dev-runtime')) return false;
  process.kill(state.pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (isAliveAs(state.pid, 'dev-runtime')) {
    if (Date.now() > deadline) process.kill(state.pid, 'SIGKILL');
    await delay(100);
  }
  return true;
}
