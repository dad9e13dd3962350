import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { delimiter, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import type { RequestOptions } from 'node:https';
import { parse as parseYaml } from 'yaml';
import { VirtualKubeletError } from '../errors.js';

/**
 * A kubeconfig loader: clusters, users and contexts as kubectl reads them, without the generated
 * API of `@kubernetes/client-node` (tens of MiB of heap per process). Supports files, merged
 * `$KUBECONFIG` lists, `~/.kube/config`, in-cluster service accounts, client certificates,
 * tokens, token files, basic auth and exec credential plugins.
 */

/** The part of a kubeconfig the API client needs. `@kubernetes/client-node`'s `KubeConfig` has it too. */
export interface KubeConfigSource {
  getCurrentCluster(): {
    readonly server: string;
    readonly caData?: string;
    readonly caFile?: string;
  } | null;
  /** Fills `ca`, `cert`, `key`, `rejectUnauthorized`, `servername` and the auth header. */
  applyToHTTPSOptions(opts: RequestOptions): Promise<void>;
}

export interface KubeCluster {
  readonly name: string;
  readonly server: string;
  /** Base64 PEM. */
  readonly caData?: string;
  /** Absolute path. */
  readonly caFile?: string;
  readonly skipTLSVerify: boolean;
  readonly tlsServerName?: string;
  readonly proxyUrl?: string;
  /** The `client.authentication.k8s.io/exec` extension, passed to exec plugins as `config`. */
  readonly execExtension?: unknown;
}

export interface ExecConfig {
  readonly apiVersion: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly env: readonly { readonly name: string; readonly value: string }[];
  readonly installHint?: string;
  readonly provideClusterInfo: boolean;
  readonly interactiveMode?: string;
}

export interface KubeUser {
  readonly name: string;
  /** Base64 PEM. */
  readonly certData?: string;
  readonly certFile?: string;
  /** Base64 PEM. */
  readonly keyData?: string;
  readonly keyFile?: string;
  readonly token?: string;
  readonly tokenFile?: string;
  readonly username?: string;
  readonly password?: string;
  readonly exec?: ExecConfig;
  readonly authProvider?: string;
}

export interface KubeContext {
  readonly name: string;
  readonly cluster: string;
  readonly user: string;
  readonly namespace?: string;
}

export interface KubeConfigOptions {
  /** Default: `process.env`. */
  readonly env?: NodeJS.ProcessEnv;
  /** Default: `$HOME`, else the OS home directory. */
  readonly homeDir?: string;
  /** Default: `/var/run/secrets/kubernetes.io/serviceaccount`. */
  readonly serviceAccountDir?: string;
  /** Default: `Date.now`. */
  readonly now?: () => number;
}

const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';
const EXEC_API_VERSIONS = new Set([
  'client.authentication.k8s.io/v1',
  'client.authentication.k8s.io/v1beta1',
]);

interface ExecCredential {
  readonly token?: string;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  /** Milliseconds since the epoch; undefined: never expires. */
  readonly expiresAt?: number;
}

const invalid = (message: string, cause?: unknown): VirtualKubeletError =>
  new VirtualKubeletError('InvalidInput', message, cause === undefined ? undefined : { cause });

const firstLine = (err: unknown): string =>
  (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';

/** Clusters, users and contexts from kubeconfig files or a pod's service account. */
export class KubeConfig implements KubeConfigSource {
  clusters: KubeCluster[] = [];
  users: KubeUser[] = [];
  contexts: KubeContext[] = [];
  currentContext = '';
  readonly #env: NodeJS.ProcessEnv;
  readonly #homeDir: string | undefined;
  readonly #serviceAccountDir: string;
  readonly #now: () => number;
  readonly #credentials = new Map<string, Promise<ExecCredential>>();

  constructor(options: KubeConfigOptions = {}) {
    this.#env = options.env ?? process.env;
    this.#homeDir = options.homeDir;
    this.#serviceAccountDir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
    this.#now = options.now ?? Date.now;
  }

  /** Reads one kubeconfig file; relative paths in it are resolved against its directory. */
  loadFromFile(path: string): void {
    this.#reset();
    this.#merge(readConfigFile(path));
  }

  /** Parses a kubeconfig; relative paths in it are resolved against `dir` (default: the cwd). */
  loadFromString(text: string, dir = process.cwd()): void {
    this.#reset();
    this.#merge(parseConfig(text, dir));
  }

  /**
   * As kubectl: the files of `$KUBECONFIG` (merged, the first to set a value wins; missing files
   * are skipped), else `~/.kube/config`, else the pod's service account.
   */
  loadFromDefault(): void {
    this.#reset();
    const list = this.#env.KUBECONFIG;
    if (list) {
      const files = list.split(delimiter).filter((f) => f !== '');
      const present = files.filter((f) => existsSync(f));
      if (present.length === 0 && files.length > 0 && !this.#inClusterPossible())
        throw invalid(`none of the KUBECONFIG files exists (${files.join(', ')})`);
      for (const f of present) {
        try {
          this.#merge(readConfigFile(f));
        } catch (err) {
          throw invalid(`${f}: ${firstLine(err)}`, err);
        }
      }
      if (this.getCurrentCluster() || !this.#inClusterPossible()) return;
    } else {
      const home = join(this.#homeDir ?? this.#env.HOME ?? homedir(), '.kube', 'config');
      if (existsSync(home)) {
        this.#merge(readConfigFile(home));
        return;
      }
    }
    if (this.#inClusterPossible()) this.loadFromCluster();
  }

  /**
   * The API server (`KUBERNETES_SERVICE_HOST`, `KUBERNETES_SERVICE_PORT`) and service account of
   * the pod this runs in: `ca.crt` and `token` of the service-account directory, the token read
   * again for every request (the kubelet rotates it), and `namespace`, when present, as the
   * context's namespace.
   */
  loadFromCluster(): void {
    const host = this.#env.KUBERNETES_SERVICE_HOST;
    const port = this.#env.KUBERNETES_SERVICE_PORT;
    if (!host || !port)
      throw invalid(
        'not running inside a cluster: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set',
      );
    const name = 'inCluster';
    this.#reset();
    this.clusters = [
      {
        name,
        server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
        caFile: join(this.#serviceAccountDir, 'ca.crt'),
        skipTLSVerify: false,
      },
    ];
    this.users = [{ name, tokenFile: join(this.#serviceAccountDir, 'token') }];
    let namespace: string | undefined;
    try {
      namespace = readFileSync(join(this.#serviceAccountDir, 'namespace'), 'utf8').trim();
    } catch {
      // A projected service-account volume need not carry the namespace.
    }
    this.contexts = [{ name, cluster: name, user: name, ...(namespace ? { namespace } : {}) }];
    this.currentContext = name;
  }

  getCurrentContext(): KubeContext | null {
    return this.contexts.find((c) => c.name === this.currentContext) ?? null;
  }

  getCurrentCluster(): KubeCluster | null {
    const ctx = this.getCurrentContext();
    return (ctx && this.clusters.find((c) => c.name === ctx.cluster)) ?? null;
  }

  getCurrentUser(): KubeUser | null {
    const ctx = this.getCurrentContext();
    return (ctx && this.users.find((u) => u.name === ctx.user)) ?? null;
  }

  /** Throws what {@link applyToHTTPSOptions} would for settings this loader does not support. */
  checkSupported(): void {
    const cluster = this.getCurrentCluster();
    if (!cluster) return;
    if (!cluster.server) throw invalid(`cluster "${cluster.name}" has no server`);
    if (cluster.proxyUrl)
      throw invalid(
        `cluster "${cluster.name}" sets proxy-url ${cluster.proxyUrl}, which is not supported: reach the API server directly`,
      );
    const user = this.getCurrentUser();
    if (user?.authProvider)
      throw invalid(
        `user "${user.name}" uses the auth-provider "${user.authProvider}", which is not supported: use an exec credential plugin (users[].user.exec) instead`,
      );
    if (user?.exec?.interactiveMode === 'Always')
      throw invalid(
        `user "${user.name}": the exec plugin ${user.exec.command} needs an interactive terminal (interactiveMode: Always), which an agent does not have`,
      );
  }

  async applyToHTTPSOptions(opts: RequestOptions): Promise<void> {
    const cluster = this.getCurrentCluster();
    if (!cluster) throw invalid(`the kubeconfig has no current cluster`);
    this.checkSupported();
    if (cluster.caData) opts.ca = Buffer.from(cluster.caData, 'base64');
    else if (cluster.caFile)
      opts.ca = readRef(cluster.caFile, `the certificate-authority of cluster "${cluster.name}"`);
    if (cluster.skipTLSVerify) opts.rejectUnauthorized = false;
    if (cluster.tlsServerName) opts.servername = cluster.tlsServerName;
    const user = this.getCurrentUser();
    if (!user) return;
    const what = (field: string): string => `the ${field} of user "${user.name}"`;
    if (user.certData) opts.cert = Buffer.from(user.certData, 'base64');
    else if (user.certFile) opts.cert = readRef(user.certFile, what('client-certificate'));
    if (user.keyData) opts.key = Buffer.from(user.keyData, 'base64');
    else if (user.keyFile) opts.key = readRef(user.keyFile, what('client-key'));
    let authorization: string | undefined;
    if (user.token) authorization = `Bearer ${user.token}`;
    else if (user.tokenFile)
      // Read on every call: service-account tokens are rotated.
      authorization = `Bearer ${readRef(user.tokenFile, what('tokenFile')).toString('utf8').trim()}`;
    else if (user.exec) {
      const cred = await this.#execCredential(user, user.exec, cluster);
      if (cred.token) authorization = `Bearer ${cred.token}`;
      if (cred.cert && cred.key) {
        opts.cert = cred.cert;
        opts.key = cred.key;
      }
    } else if (user.username !== undefined || user.password !== undefined)
      authorization = `Basic ${Buffer.from(`${user.username ?? ''}:${user.password ?? ''}`).toString('base64')}`;
    if (authorization !== undefined) {
      const headers = { ...(opts.headers as Record<string, string> | undefined) };
      headers.Authorization = authorization;
      opts.headers = headers;
    }
  }

  async #execCredential(
    user: KubeUser,
    exec: ExecConfig,
    cluster: KubeCluster,
  ): Promise<ExecCredential> {
    const cached = this.#credentials.get(user.name);
    if (cached) {
      const cred = await cached.catch(() => undefined);
      if (cred && (cred.expiresAt === undefined || cred.expiresAt > this.#now())) return cred;
      // Someone else refreshed it meanwhile.
      const current = this.#credentials.get(user.name);
      if (current && current !== cached) return current;
    }
    const pending = runExecPlugin(user.name, exec, cluster, this.#env);
    this.#credentials.set(user.name, pending);
    try {
      return await pending;
    } catch (err) {
      if (this.#credentials.get(user.name) === pending) this.#credentials.delete(user.name);
      throw err;
    }
  }

  #inClusterPossible(): boolean {
    return (
      Boolean(this.#env.KUBERNETES_SERVICE_HOST && this.#env.KUBERNETES_SERVICE_PORT) &&
      existsSync(join(this.#serviceAccountDir, 'token'))
    );
  }

  #reset(): void {
    this.clusters = [];
    this.users = [];
    this.contexts = [];
    this.currentContext = '';
    this.#credentials.clear();
  }

  /** kubectl's merge: the first file to set a name (or the current context) wins. */
  #merge(other: Parsed): void {
    const add = <T extends { name: string }>(into: T[], from: readonly T[]): void => {
      for (const item of from) if (!into.some((i) => i.name === item.name)) into.push(item);
    };
    add(this.clusters, other.clusters);
    add(this.users, other.users);
    add(this.contexts, other.contexts);
    if (!this.currentContext && other.currentContext) this.currentContext = other.currentContext;
  }
}

/**
 * Loads the kubeconfig at `path`, else as kubectl does (`$KUBECONFIG`, `~/.kube/config`, the
 * pod's service account). Throws a one-line {@link VirtualKubeletError} when nothing usable is found.
 */
export function loadKubeConfig(path?: string, options: KubeConfigOptions = {}): KubeConfig {
  const kc = new KubeConfig(options);
  const env = options.env ?? process.env;
  try {
    if (path) kc.loadFromFile(path);
    else kc.loadFromDefault();
    kc.checkSupported();
  } catch (err) {
    throw invalid(
      `cannot load the kubeconfig ${path ?? env.KUBECONFIG ?? '~/.kube/config'}: ${firstLine(err)}`,
      err,
    );
  }
  if (!kc.getCurrentCluster())
    throw invalid(
      `no cluster configured: pass --kubeconfig, set KUBECONFIG, or run inside a cluster`,
    );
  return kc;
}

interface Parsed {
  readonly clusters: KubeCluster[];
  readonly users: KubeUser[];
  readonly contexts: KubeContext[];
  readonly currentContext: string;
}

function readConfigFile(path: string): Parsed {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw invalid(
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'it is a directory'
            : firstLine(err),
      err,
    );
  }
  return parseConfig(text, dirname(resolve(path)));
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

function parseConfig(text: string, dir: string): Parsed {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw invalid(`not valid YAML: ${firstLine(err)}`, err);
  }
  if (doc === null || doc === undefined)
    return { clusters: [], users: [], contexts: [], currentContext: '' };
  if (!isObj(doc)) throw invalid('not a kubeconfig: expected a mapping at the top level');
  const path = (p: unknown): string | undefined =>
    typeof p === 'string' && p !== '' ? (isAbsolute(p) ? p : resolve(dir, p)) : undefined;
  const entries = (key: string, inner: string): { name: string; value: Obj }[] => {
    const list = doc[key];
    if (list === undefined || list === null) return [];
    if (!Array.isArray(list)) throw invalid(`${key}: expected a list`);
    return list.map((e: unknown, i) => {
      if (!isObj(e) || typeof e.name !== 'string' || e.name === '')
        throw invalid(`${key}[${String(i)}]: expected a name`);
      const value = e[inner] ?? {};
      if (!isObj(value))
        throw invalid(`${key}[${String(i)}] (${e.name}): ${inner} is not a mapping`);
      return { name: e.name, value };
    });
  };
  const clusters = entries('clusters', 'cluster').map(({ name, value: c }): KubeCluster => {
    const s = (k: string): string | undefined => str(c, k, `cluster "${name}"`);
    return {
      name,
      server: s('server') ?? '',
      caData: s('certificate-authority-data'),
      caFile: path(s('certificate-authority')),
      skipTLSVerify: c['insecure-skip-tls-verify'] === true,
      tlsServerName: s('tls-server-name'),
      proxyUrl: s('proxy-url'),
      execExtension: execExtension(c.extensions),
    };
  });
  const users = entries('users', 'user').map(({ name, value: u }): KubeUser => {
    const s = (k: string): string | undefined => str(u, k, `user "${name}"`);
    const provider = u['auth-provider'];
    return {
      name,
      certData: s('client-certificate-data'),
      certFile: path(s('client-certificate')),
      keyData: s('client-key-data'),
      keyFile: path(s('client-key')),
      token: s('token'),
      tokenFile: path(s('tokenFile')),
      username: s('username'),
      password: s('password'),
      exec: u.exec === undefined || u.exec === null ? undefined : execConfig(name, u.exec, dir),
      authProvider: isObj(provider)
        ? typeof provider.name === 'string'
          ? provider.name
          : 'unnamed'
        : undefined,
    };
  });
  const contexts = entries('contexts', 'context').map(({ name, value: c }): KubeContext => {
    const s = (k: string): string | undefined => str(c, k, `context "${name}"`);
    return { name, cluster: s('cluster') ?? '', user: s('user') ?? '', namespace: s('namespace') };
  });
  const current = doc['current-context'];
  return {
    clusters: dedupe(clusters),
    users: dedupe(users),
    contexts: dedupe(contexts),
    currentContext: typeof current === 'string' ? current : '',
  };
}

function execExtension(list: unknown): unknown {
  if (!Array.isArray(list)) return undefined;
  const found: unknown = list.find(
    (e: unknown) => isObj(e) && e.name === 'client.authentication.k8s.io/exec',
  );
  return isObj(found) ? found.extension : undefined;
}

function dedupe<T extends { name: string }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((i) => !seen.has(i.name) && Boolean(seen.add(i.name)));
}

function str(o: Obj, key: string, where: string): string | undefined {
  const v = o[key];
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw invalid(`${where}: ${key} is not a string`);
  return v;
}

function execConfig(user: string, raw: unknown, dir: string): ExecConfig {
  const where = `user "${user}": exec`;
  if (!isObj(raw)) throw invalid(`${where} is not a mapping`);
  const command = str(raw, 'command', where);
  if (!command) throw invalid(`${where} has no command`);
  const apiVersion = str(raw, 'apiVersion', where) ?? '';
  if (!EXEC_API_VERSIONS.has(apiVersion))
    throw invalid(
      `${where}: apiVersion ${apiVersion || '(none)'} is not supported (client.authentication.k8s.io/v1 or v1beta1)`,
    );
  const args = raw.args ?? [];
  if (!Array.isArray(args) || !args.every((a) => typeof a === 'string'))
    throw invalid(`${where}: args is not a list of strings`);
  const env = raw.env ?? [];
  if (
    !Array.isArray(env) ||
    !env.every((e) => isObj(e) && typeof e.name === 'string' && typeof e.value === 'string')
  )
    throw invalid(`${where}: env is not a list of {name, value}`);
  return {
    apiVersion,
    // As kubectl: a relative command with a directory in it is relative to the kubeconfig.
    command: !isAbsolute(command) && command.includes(sep) ? resolve(dir, command) : command,
    args: args,
    env: env as { name: string; value: string }[],
    installHint: str(raw, 'installHint', where),
    provideClusterInfo: raw.provideClusterInfo === true,
    interactiveMode: str(raw, 'interactiveMode', where),
  };
}

function readRef(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw invalid(`cannot read ${what}: ${firstLine(err)}`, err);
  }
}

/** Runs an exec credential plugin as kubectl does and returns its credential. */
async function runExecPlugin(
  user: string,
  exec: ExecConfig,
  cluster: KubeCluster,
  baseEnv: NodeJS.ProcessEnv,
): Promise<ExecCredential> {
  const fail = (why: string, cause?: unknown): VirtualKubeletError =>
    invalid(`the exec credential plugin of user "${user}" (${exec.command}) failed: ${why}`, cause);
  let caData = cluster.caData;
  if (!caData && cluster.caFile && exec.provideClusterInfo)
    caData = readRef(
      cluster.caFile,
      `the certificate-authority of cluster "${cluster.name}"`,
    ).toString('base64');
  const info = {
    apiVersion: exec.apiVersion,
    kind: 'ExecCredential',
    spec: {
      interactive: false,
      ...(exec.provideClusterInfo
        ? {
            cluster: {
              server: cluster.server,
              ...(cluster.tlsServerName ? { 'tls-server-name': cluster.tlsServerName } : {}),
              ...(cluster.skipTLSVerify ? { 'insecure-skip-tls-verify': true } : {}),
              ...(caData ? { 'certificate-authority-data': caData } : {}),
              ...(cluster.execExtension === undefined ? {} : { config: cluster.execExtension }),
            },
          }
        : {}),
    },
  };
  const env: NodeJS.ProcessEnv = { ...baseEnv };
  for (const e of exec.env) env[e.name] = e.value;
  env.KUBERNETES_EXEC_INFO = JSON.stringify(info);
  const stdout = await new Promise<string>((ok, ko) => {
    const child = execFile(
      exec.command,
      [...exec.args],
      { env, maxBuffer: 16 << 20, timeout: 5 * 60_000 },
      (err, out, errOut) => {
        if (!err) {
          ok(out);
          return;
        }
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT')
          ko(
            fail(
              `command not found${exec.installHint ? `: ${exec.installHint.trim().replace(/\s*\n\s*/g, ' ')}` : ''}`,
              err,
            ),
          );
        else {
          const last = errOut.trim().split('\n').pop() ?? '';
          const exit =
            child.exitCode === null ? 'was killed' : `exited with ${String(child.exitCode)}`;
          ko(fail(last ? `${exit}: ${last}` : exit, err));
        }
      },
    );
    child.stdin?.end();
  });
  let cred: unknown;
  try {
    cred = JSON.parse(stdout);
  } catch (err) {
    throw fail(`its output is not JSON: ${firstLine(err)}`, err);
  }
  if (!isObj(cred) || cred.kind !== 'ExecCredential')
    throw fail('its output is not an ExecCredential');
  if (cred.apiVersion !== exec.apiVersion)
    throw fail(`it answered apiVersion ${String(cred.apiVersion)}, expected ${exec.apiVersion}`);
  const status = cred.status;
  if (!isObj(status)) throw fail('its ExecCredential has no status');
  const token = typeof status.token === 'string' && status.token !== '' ? status.token : undefined;
  const certPem =
    typeof status.clientCertificateData === 'string' ? status.clientCertificateData : '';
  const keyPem = typeof status.clientKeyData === 'string' ? status.clientKeyData : '';
  if (!token && !(certPem && keyPem))
    throw fail(
      'its ExecCredential has neither status.token nor status.clientCertificateData and clientKeyData',
    );
  let expiresAt: number | undefined;
  if (typeof status.expirationTimestamp === 'string' && status.expirationTimestamp !== '') {
    expiresAt = Date.parse(status.expirationTimestamp);
    if (Number.isNaN(expiresAt))
      throw fail(`bad status.expirationTimestamp ${status.expirationTimestamp}`);
  }
  return {
    token,
    ...(certPem && keyPem ? { cert: Buffer.from(certPem), key: Buffer.from(keyPem) } : {}),
    expiresAt,
  };
}
