import type { V1Taint } from '../wire.js';
import { Command, InvalidArgumentError, Option } from 'commander';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { VirtualKubeletError, errorMessage } from '../errors.js';
import { parse as loadYaml } from 'yaml';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { allowAll, WebhookAuthorizer } from '../api/auth.js';
import {
  certificateFromCsr,
  certificateFromFiles,
  rotateCertificate,
  selfSignedCertificate,
  type ServingCertificate,
  type ServingNames,
} from '../api/certs.js';
import { KubeClient, loadKubeConfig } from '../kube/client.js';
import type { KubeConfig } from '../kube/kubeconfig.js';
import type { Logger } from '../log.js';
import { VirtualNode, type VirtualNodeOptions } from '../agent/virtual-node.js';
import { NodeGroup } from '../agent/node-group.js';
import type { KubeletServer } from '../api/server.js';
import { KUBERNETES_VERSION } from '../devcluster/versions.js';
import {
  checkPodCidr,
  checkProvider,
  createProvider,
  providerNames,
  type ProviderContext,
} from './registry.js';
import { Registry } from 'prom-client';
import { abortOf } from '../abort.js';
import {
  checkTimings,
  defaultIdentity,
  KubeLeaseLock,
  LeaderElector,
  type LeaderElectorOptions,
} from '../agent/leader-election.js';
import { watchLeadership } from '../agent/metrics.js';
import { runTogether } from '../agent/wiring.js';
import { isClosable, type Provider } from '../provider.js';
import { addGoFlags, checkGoFlags, type GoFlagOptions } from './go-flags.js';
import { agentLogger, LOG_FORMATS, LOG_LEVELS, type LogFormat, type LogLevel } from './logger.js';
import { startTracing, tracingPlan } from './tracing.js';
import { parsePort, shutdownSignal, type Io } from './util.js';
import { VERSION } from './version.js';

/** Options of the `run` command (the default command). */
export interface RunOptions extends GoFlagOptions {
  kubeconfig?: string;
  nodename: string;
  provider: string;
  providerConfig?: string;
  os: string;
  nodeIp: string;
  /** The node's pod CIDR (process provider: pod addresses; the Node's spec.podCIDR). */
  podCidr?: string;
  /** `--cluster-dns`: the cluster DNS server addresses pods with ClusterFirst use. */
  clusterDns: string[];
  /** `--cluster-domain`: the cluster's DNS domain, for pods' search domains and FQDNs. */
  clusterDomain: string;
  labels: Record<string, string>;
  disableTaint: boolean;
  podSyncWorkers: number;
  fullResyncPeriod: number;
  startupTimeout: number;
  listenPort: number;
  logLevel: LogLevel;
  logFormat: LogFormat;
  kubeApiQps: number;
  kubeApiBurst: number;
  eventQps: number;
  eventBurst: number;
  nodeLeaseDurationSeconds: number;
  nodeStatusUpdateFrequency: number;
  podStatusPollInterval: number;
  volumeRefreshPeriod: number;
  tlsCertFile?: string;
  tlsPrivateKeyFile?: string;
  clientCaFile?: string;
  rotateServerCertificates: boolean;
  authorizationMode: 'Webhook' | 'AlwaysAllow';
  streamIdleTimeout: number;
  streamCreationTimeout: number;
  /** A file listing many nodes to run in this process. */
  nodes?: string;
  /** Several replicas serve each node; one leads it through a Lease. */
  leaderElect: boolean;
  /** Milliseconds (whole seconds). */
  leaderElectLeaseDuration: number;
  leaderElectRenewDeadline: number;
  leaderElectRetryPeriod: number;
  leaderElectNamespace: string;
  leaderElectIdentity?: string;
}

/** Parses Go durations as the Go CLI takes them: `90s`, `1m30s`, `500ms`, `0`. Returns ms. */
export function parseDuration(value: string): number {
  if (value === '0') return 0;
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of value.matchAll(re)) {
    if (m.index !== consumed) break;
    total += Number(m[1]) * (units[m[2] ?? ''] ?? 0);
    consumed += m[0].length;
  }
  if (consumed !== value.length || value.length === 0)
    throw new InvalidArgumentError(`expected a duration like 30s, 1m or 1m30s, got '${value}'`);
  return total;
}

function parsePositiveDuration(value: string): number {
  const ms = parseDuration(value);
  if (ms <= 0) throw new InvalidArgumentError(`expected a duration above 0, got '${value}'`);
  return ms;
}

function parsePositiveInt(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1)
    throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function parseCount(value: string): number {
  if (!/^\d+$/.test(value))
    throw new InvalidArgumentError(`expected 0 or a positive integer, got '${value}'`);
  return Number(value);
}

/** `--cluster-dns`: IP addresses separated by commas; the flag may be given more than once. */
export function parseIpList(value: string, previous: string[] = []): string[] {
  const out = [...previous];
  for (const ip of value.split(',').map((s) => s.trim())) {
    if (ip === '') continue;
    if (isIP(ip) === 0) throw new InvalidArgumentError(`expected IP addresses, got '${ip}'`);
    out.push(ip);
  }
  return out;
}

/** `--cluster-domain`: a DNS name (a trailing dot is dropped). */
export function parseDomain(value: string): string {
  const d = value.endsWith('.') ? value.slice(0, -1) : value;
  if (
    d.length > 253 ||
    !/^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$/.test(d)
  )
    throw new InvalidArgumentError(`expected a DNS domain such as cluster.local, got '${value}'`);
  return d;
}

function parseLabels(value: string, previous: Record<string, string>): Record<string, string> {
  const out = { ...previous };
  for (const pair of value.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`expected key=value pairs, got '${pair}'`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}

/** The host's first non-loopback IPv4 address, else 127.0.0.1. */
export function primaryAddress(): string {
  for (const addrs of Object.values(networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

/** The provider taint, from the environment as the Go CLI reads it, or the default. */
export function taintFromEnv(provider: string, env: NodeJS.ProcessEnv = process.env): V1Taint {
  const effect = env.VKUBELET_TAINT_EFFECT ?? env.VK_TAINT_EFFECT ?? 'NoSchedule';
  if (!['NoSchedule', 'NoExecute', 'PreferNoSchedule'].includes(effect))
    throw new VirtualKubeletError(
      'InvalidInput',
      `VKUBELET_TAINT_EFFECT must be NoSchedule, NoExecute or PreferNoSchedule, got '${effect}'`,
    );
  return {
    key: env.VKUBELET_TAINT_KEY ?? env.VK_TAINT_KEY ?? 'virtual-kubelet.io/provider',
    value: env.VKUBELET_TAINT_VALUE ?? env.VK_TAINT_VALUE ?? provider,
    effect,
  };
}

function servingNames(opts: RunOptions): ServingNames {
  return { nodeName: opts.nodename, ips: [...new Set([opts.nodeIp, '127.0.0.1'])] };
}

/**
 * What a kubelet-serving CSR asks for: the node's name and its address (`--node-ip`) and nothing
 * else, as a kubelet asks for the addresses of its Node, so an approver can match the request
 * against the Node.
 */
function csrNames(opts: RunOptions): ServingNames {
  return { nodeName: opts.nodename, ips: [opts.nodeIp] };
}

/**
 * `--rotate-server-certificates`: asks for the node's kubelet-serving certificate (once the node
 * is registered, so that an approver can compare the request with the Node), puts it in use with
 * `apply`, and renews it until `signal` aborts.
 */
async function certificatesFromCluster(
  opts: RunOptions,
  client: KubeClient,
  logger: Logger,
  apply: (c: ServingCertificate) => void,
  signal: AbortSignal,
): Promise<void> {
  const names = csrNames(opts);
  const renew = (s: AbortSignal): Promise<ServingCertificate> =>
    certificateFromCsr({ client, names, logger }, s);
  let first: ServingCertificate;
  try {
    first = await renew(signal);
  } catch (err) {
    if (signal.aborted) return;
    throw err;
  }
  apply(first);
  logger.info(
    { node: opts.nodename, notAfter: first.notAfter.toISOString() },
    'serving certificate from the cluster in use',
  );
  await rotateCertificate(first, renew, apply, signal, logger);
}

/** The serving certificate: from files, from a CSR the cluster signs, or self-signed. */
async function servingCertificate(opts: RunOptions, logger: Logger): Promise<ServingCertificate> {
  if (opts.tlsCertFile || opts.tlsPrivateKeyFile) {
    if (!opts.tlsCertFile || !opts.tlsPrivateKeyFile)
      throw new VirtualKubeletError(
        'InvalidInput',
        '--tls-cert-file and --tls-private-key-file go together',
      );
    return certificateFromFiles(opts.tlsCertFile, opts.tlsPrivateKeyFile);
  }
  if (opts.rotateServerCertificates) {
    // As a kubelet does, the node registers first and asks for its certificate after, so that an
    // approver can compare the request with the Node; until it is signed, a self-signed one.
    logger.info(
      { node: opts.nodename },
      'serving a self-signed certificate until the kubelet-serving CSR is approved and signed',
    );
    return selfSignedCertificate(servingNames(opts));
  }
  logger.warn(
    'no serving certificate given: using a self-signed one, which the API server refuses when it verifies kubelets (pass --tls-cert-file/--tls-private-key-file or --rotate-server-certificates)',
  );
  return selfSignedCertificate(servingNames(opts));
}

/** The client CA: the flag's file, else the CA of the cluster in the kubeconfig. */
function clientCA(opts: RunOptions, kc: KubeConfig): { clientCA?: Buffer } {
  if (opts.clientCaFile) return { clientCA: readFileSync(opts.clientCaFile) };
  const cluster = kc.getCurrentCluster();
  if (cluster?.caData) return { clientCA: Buffer.from(cluster.caData, 'base64') };
  if (cluster?.caFile) return { clientCA: readFileSync(cluster.caFile) };
  return {};
}

export function makeLogger(level: LogLevel, format: LogFormat = 'json'): Logger {
  return agentLogger({ level, format });
}

export function runCommand(io: Io): Command {
  const env = process.env;
  const cmd = new Command('run')
    .description('run a virtual node (the default command)')
    .option('--kubeconfig <path>', 'kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)')
    .option('--nodename <name>', 'name of the Node', env.DEFAULT_NODE_NAME ?? 'virtual-kubelet')
    .option(
      '--nodes <file>',
      'run many nodes in one process: a JSON or YAML file {nodes: [{name, provider, providerConfig, port}]}',
    )
    .option('--provider <name>', `provider: ${providerNames().join(', ')}`, 'mock')
    .option('--provider-config <path>', 'provider configuration file')
    .option('--os <os>', 'operating system of the node', 'linux')
    .option(
      '--node-ip <ip>',
      'InternalIP of the node (default: $VKUBELET_POD_IP or the host address)',
      env.VKUBELET_POD_IP ?? primaryAddress(),
    )
    .option(
      '--pod-cidr <cidr>',
      "the node's pod CIDR (IPv4): pod addresses of the process provider, and the Node's spec.podCIDR",
    )
    .option(
      '--cluster-dns <ip,...>',
      'DNS server addresses for pods with dnsPolicy ClusterFirst (none: they fall back to Default)',
      parseIpList,
      [],
    )
    .option(
      '--cluster-domain <domain>',
      "the cluster's DNS domain: pods search <ns>.svc.<domain>",
      parseDomain,
      'cluster.local',
    )
    .option('--labels <k=v,...>', 'extra node labels', parseLabels, {})
    .option('--disable-taint', 'register the node without the provider taint', false)
    .option('--pod-sync-workers <n>', 'workers of the pod sync queue', parsePositiveInt, 50)
    .addOption(
      new Option('--full-resync-period <duration>', 'resync every pod this often')
        .default(60_000, '1m')
        .argParser(parseDuration),
    )
    .addOption(
      new Option('--startup-timeout <duration>', 'fail if not ready by then (0: wait forever)')
        .default(0, '0')
        .argParser(parseDuration),
    )
    .option(
      '--listen-port <port>',
      'kubelet API port (default: $KUBELET_PORT or 10250)',
      parsePort,
      env.KUBELET_PORT ? parsePort(env.KUBELET_PORT) : 10250,
    )
    .addOption(new Option('--log-level <level>', 'log level').choices(LOG_LEVELS).default('info'))
    .addOption(
      new Option('--log-format <format>', 'json: a JSON object a line; text: for a terminal')
        .choices(LOG_FORMATS)
        .default('json'),
    )
    .option('--kube-api-qps <n>', 'requests per second to the API server', parsePositiveInt, 1000)
    .option('--kube-api-burst <n>', 'burst of requests to the API server', parsePositiveInt, 2000)
    .option('--event-qps <n>', 'Events written per second (0: no limit)', parseCount, 50)
    .option('--event-burst <n>', 'burst of Events', parsePositiveInt, 100)
    .option('--node-lease-duration-seconds <n>', 'duration of the node lease', parsePositiveInt, 40)
    .addOption(
      new Option('--node-status-update-frequency <duration>', 'write the node status this often')
        .default(60_000, '1m')
        .argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--pod-status-poll-interval <duration>',
        'poll providers without notifications this often',
      )
        .default(5_000, '5s')
        .argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--volume-refresh-period <duration>',
        'resolve the volumes of each pod again about this often (providers with setPodVolumes)',
      )
        .default(40_000, '40s')
        .argParser(parsePositiveDuration),
    )
    .option(
      '--tls-cert-file <path>',
      'serving certificate (default: $APISERVER_CERT_LOCATION)',
      env.APISERVER_CERT_LOCATION,
    )
    .option(
      '--tls-private-key-file <path>',
      'serving key (default: $APISERVER_KEY_LOCATION)',
      env.APISERVER_KEY_LOCATION,
    )
    .option(
      '--client-ca-file <path>',
      'CA of client certificates (default: $APISERVER_CA_CERT_LOCATION, else the kubeconfig CA)',
      env.APISERVER_CA_CERT_LOCATION,
    )
    .option(
      '--rotate-server-certificates',
      'get the serving certificate from the cluster (a kubelet-serving CSR for the node name and --node-ip, asked once the node is registered, which an approver or kubectl certificate approve approves) and renew it; self-signed until then',
      false,
    )
    .addOption(
      new Option(
        '--authorization-mode <mode>',
        'Webhook: TokenReview and SubjectAccessReview; AlwaysAllow: no checks (development only)',
      )
        .choices(['Webhook', 'AlwaysAllow'])
        .default('Webhook'),
    )
    .addOption(
      new Option(
        '--stream-idle-timeout <duration>',
        'close exec/attach/port-forward connections idle this long',
      )
        .default(4 * 3_600_000, '4h')
        .argParser(parseDuration),
    )
    .addOption(
      new Option(
        '--stream-creation-timeout <duration>',
        'how long a client may take to open its streams',
      )
        .default(30_000, '30s')
        .argParser(parseDuration),
    )
    .option(
      '--leader-elect',
      'several replicas serve each node: one leads it through a Lease, the others stand by',
      false,
    )
    .addOption(
      new Option(
        '--leader-elect-lease-duration <duration>',
        'a standby takes over a Lease its holder has not renewed for this long',
      )
        .default(15_000, '15s')
        .argParser(parsePositiveDuration),
    )
    .addOption(
      new Option(
        '--leader-elect-renew-deadline <duration>',
        'the leader stops leading when it could not renew its Lease for this long',
      )
        .default(10_000, '10s')
        .argParser(parsePositiveDuration),
    )
    .addOption(
      new Option(
        '--leader-elect-retry-period <duration>',
        'between two attempts to acquire or renew the Lease',
      )
        .default(2_000, '2s')
        .argParser(parsePositiveDuration),
    )
    .option(
      '--leader-elect-namespace <namespace>',
      "where each node's Lease is (named after the node); kube-node-lease: the node's own heartbeat Lease",
      LEADER_ELECT_NODE_LEASE_NAMESPACE,
    )
    .option(
      '--leader-elect-identity <id>',
      'the holderIdentity this replica writes (default: <host name>_<random UUID>)',
    )
    .action(async (opts: RunOptions) => {
      for (const note of checkGoFlags(opts)) io.err(`virtual-kubelet: ${note}`);
      await runNode(opts, io);
    });
  return addGoFlags(cmd);
}

/** The `run` options with every default, as if no flag were given. */
export function defaultRunOptions(io: Io): RunOptions {
  return runCommand(io).opts<RunOptions>();
}

/**
 * The namespace of the nodes' own Leases. With it as `--leader-elect-namespace`, the node's Lease
 * is the election's lock and the leader's renewals are the node's heartbeat: the one Lease a
 * kubelet identity (`system:node:<name>`) may write under NodeRestriction.
 */
export const LEADER_ELECT_NODE_LEASE_NAMESPACE = 'kube-node-lease';

/** Runs one virtual node until `signal` (by default SIGINT/SIGTERM); `onReady` once it is Ready. */
export async function runNode(
  opts: RunOptions,
  io: Io,
  signal = shutdownSignal(io),
  onReady?: () => void,
): Promise<void> {
  if (opts.podCidr !== undefined) checkPodCidr(opts.podCidr);
  if (opts.podCidr !== undefined && opts.nodes)
    throw new VirtualKubeletError(
      'InvalidInput',
      '--pod-cidr names the CIDR of one node: with --nodes, give each node "podCIDR" in its provider config',
    );
  // Checked before anything else: a mistake in the flags is one line, at once.
  const timings = opts.leaderElect ? electionTimings(opts) : undefined;
  const logger = makeLogger(opts.logLevel, opts.logFormat);
  const plan = tracingPlan(opts);
  const kc = loadKubeConfig(opts.kubeconfig);
  const stopTracing = await startTracing(plan, logger);
  try {
    await runNodeTraced(opts, logger, kc, signal, onReady, timings);
  } finally {
    await stopTracing();
  }
}

async function runNodeTraced(
  opts: RunOptions,
  logger: Logger,
  kc: KubeConfig,
  signal: AbortSignal,
  onReady: (() => void) | undefined,
  timings: ReturnType<typeof electionTimings> | undefined,
): Promise<void> {
  const client = await KubeClient.create(kc, { qps: opts.kubeApiQps, burst: opts.kubeApiBurst });
  try {
    await client.request('GET', '/version', {
      signal: AbortSignal.any([signal, AbortSignal.timeout(10_000)]),
    });
  } catch (err) {
    throw new VirtualKubeletError(
      'Unavailable',
      `cannot reach the API server at ${client.server.origin}: ${errorMessage(err)}`,
    );
  }
  const specs = opts.nodes
    ? await readNodesFile(opts.nodes, opts)
    : [
        {
          name: opts.nodename,
          provider: opts.provider,
          port: opts.listenPort,
          ...(opts.providerConfig ? { providerConfig: opts.providerConfig } : {}),
        },
      ];
  if (timings) {
    try {
      await runElected(opts, specs, timings, { client, kc, logger, signal }, onReady);
    } catch (err) {
      // A stop while a leader was still starting is a normal way to stop, not a failure.
      if (!signal.aborted) throw err;
    } finally {
      client.close();
    }
    return;
  }
  const providers: Provider[] = [];
  // Once running, each node closes its own provider when it stops.
  const closeProviders = async (): Promise<void> => {
    await Promise.allSettled(
      providers.filter(isClosable).map((p) => p.close(AbortSignal.timeout(10_000))),
    );
  };
  const nodes: NodeSetup[] = [];
  let group: VirtualNode | NodeGroup;
  try {
    // A group without certificate files shares one self-signed certificate.
    const sharedSelfSigned =
      specs.length > 1 && !opts.tlsCertFile && !opts.rotateServerCertificates
        ? await servingCertificate(opts, logger)
        : undefined;
    for (const spec of specs) {
      const provider = await createProvider(spec.provider, providerContext(opts, spec, logger));
      providers.push(provider);
      const names = { ...opts, nodename: spec.name };
      const serving = sharedSelfSigned ?? (await servingCertificate(names, logger));
      nodes.push({
        spec,
        serving,
        options: nodeOptions(opts, spec, provider, serving, client, kc),
      });
    }
    group =
      nodes.length === 1 && nodes[0]
        ? new VirtualNode({ ...nodes[0].options, client, logger })
        : new NodeGroup({ client, logger, nodes: nodes.map((n) => n.options) });
  } catch (err) {
    await closeProviders();
    client.close();
    throw err;
  }
  const servers = (): (KubeletServer | undefined)[] =>
    group instanceof VirtualNode ? [group.server] : group.nodes.map((n) => n.server);
  const stop = new AbortController();
  const both = AbortSignal.any([signal, stop.signal]);
  if (!opts.clientCaFile && !kc.getCurrentCluster()?.caData && !kc.getCurrentCluster()?.caFile)
    logger.warn(
      'no client CA (--client-ca-file, or a CA in the kubeconfig): client certificates are not accepted, only bearer tokens',
    );
  if (opts.authorizationMode === 'AlwaysAllow')
    logger.warn(
      'the kubelet API authorizes every request (--authorization-mode AlwaysAllow): for development only',
    );
  const running = Promise.all([
    group.run(both),
    ...(opts.rotateServerCertificates
      ? nodes.map((n, i) =>
          certificatesFromCluster(
            { ...opts, nodename: n.spec.name },
            client,
            logger,
            (c) => servers()[i]?.setCertificate(c.cert, c.key),
            both,
          ),
        )
      : []),
  ]).then(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      group.whenReady(),
      running,
      new Promise<never>((_, reject) => {
        if (opts.startupTimeout > 0)
          timer = setTimeout(() => {
            reject(
              new VirtualKubeletError(
                'Unavailable',
                `the node${nodes.length > 1 ? 's were' : ' was'} not ready within ${String(opts.startupTimeout / 1000)} s`,
              ),
            );
          }, opts.startupTimeout);
      }),
    ]);
    clearTimeout(timer);
    if (!both.aborted) {
      if (nodes[0] && nodes.length === 1)
        logger.info(
          { node: nodes[0].spec.name, provider: nodes[0].spec.provider },
          'virtual node ready',
        );
      else logger.info({ nodes: nodes.length }, 'virtual nodes ready');
      onReady?.();
    }
    await running;
  } catch (err) {
    clearTimeout(timer);
    stop.abort();
    await running.catch(() => undefined);
    // Ctrl-C while still registering is a normal way to stop, not a failure.
    if (signal.aborted) return;
    throw err;
  } finally {
    client.close();
  }
}

/** The leader-election flags checked, as the elector's options. */
function electionTimings(
  opts: RunOptions,
): Pick<LeaderElectorOptions, 'leaseDurationMs' | 'renewDeadlineMs' | 'retryPeriodMs'> {
  if (opts.leaderElectLeaseDuration % 1000 !== 0)
    throw new VirtualKubeletError(
      'InvalidInput',
      `--leader-elect-lease-duration must be whole seconds (a Lease keeps seconds), got ${String(opts.leaderElectLeaseDuration)} ms`,
    );
  const timings = {
    leaseDurationMs: opts.leaderElectLeaseDuration,
    renewDeadlineMs: opts.leaderElectRenewDeadline,
    retryPeriodMs: opts.leaderElectRetryPeriod,
  };
  checkTimings(timings.leaseDurationMs, timings.renewDeadlineMs, timings.retryPeriodMs, {
    lease: '--leader-elect-lease-duration',
    renew: '--leader-elect-renew-deadline',
    retry: '--leader-elect-retry-period',
  });
  return timings;
}

/**
 * `--leader-elect`: each node has its elector and Lease; while this replica leads a node, it
 * runs the node as a restart would (a fresh provider, which adopts its pods, and the Node
 * adopted), and stops it when the leadership ends. A standby makes no provider, writes nothing
 * but its attempts on the Lease, and serves no kubelet API: the Node names the leader's port and
 * address, and logs, exec and stats are of pods the leader's provider runs. Each node keeps its
 * own watches (a group's nodes do not share them, as each may lead elsewhere).
 */
async function runElected(
  opts: RunOptions,
  specs: readonly NodeSpec[],
  timings: ReturnType<typeof electionTimings>,
  ctx: {
    readonly client: KubeClient;
    readonly kc: KubeConfig;
    readonly logger: Logger;
    readonly signal: AbortSignal;
  },
  onReady: (() => void) | undefined,
): Promise<void> {
  const { client, kc, logger } = ctx;
  for (const spec of specs) await checkProvider(spec.provider, spec.providerConfig);
  const identity = opts.leaderElectIdentity ?? defaultIdentity();
  const nodeLeaseIsLock = opts.leaderElectNamespace === LEADER_ELECT_NODE_LEASE_NAMESPACE;
  const electors = specs.map(
    (spec) =>
      new LeaderElector({
        lock: new KubeLeaseLock(client, opts.leaderElectNamespace, spec.name),
        identity,
        ...timings,
        logger: logger.child({ node: spec.name }),
      }),
  );
  const leadership = (): [string, boolean][] =>
    specs.map((spec, i) => [spec.name, electors[i]?.isLeader ?? false]);
  logger.info(
    { identity, nodes: specs.map((s) => s.name), namespace: opts.leaderElectNamespace },
    'leader election: standing by',
  );
  const lead = (spec: NodeSpec) => async (term: AbortSignal) => {
    const nodeLogger = logger.child({ node: spec.name });
    const provider = await createProvider(spec.provider, providerContext(opts, spec, logger));
    let node: VirtualNode;
    let serving: ServingCertificate;
    try {
      serving = await servingCertificate({ ...opts, nodename: spec.name }, logger);
      const registry = new Registry();
      watchLeadership(registry, leadership);
      const base = nodeOptions(opts, spec, provider, serving, client, kc);
      node = new VirtualNode({
        ...base,
        client,
        logger,
        node: { ...base.node, renewLease: !nodeLeaseIsLock },
        ...(base.api ? { api: { ...base.api, registry } } : {}),
      });
    } catch (err) {
      if (isClosable(provider)) await provider.close(AbortSignal.timeout(10_000));
      throw err;
    }
    await runTogether(term, (own) => [
      node.run(own),
      readyWithin(node, opts.startupTimeout, own).then(() => {
        if (own.aborted) return;
        nodeLogger.info({ identity, provider: spec.provider }, 'virtual node ready: leading');
        onReady?.();
      }),
      ...(opts.rotateServerCertificates
        ? [
            certificatesFromCluster(
              { ...opts, nodename: spec.name },
              client,
              logger,
              (c) => node.server?.setCertificate(c.cert, c.key),
              own,
            ),
          ]
        : []),
    ]);
  };
  await runTogether(ctx.signal, (own) =>
    electors.map((elector, i) => {
      const spec = specs[i];
      if (!spec) return Promise.resolve();
      return elector.run(own, lead(spec)).catch((err: unknown) => {
        // The node's name leads the message: the process stops with it, so it must say which.
        if (err instanceof Error && !err.message.includes(spec.name))
          err.message = `node ${spec.name}: ${err.message}`;
        throw err;
      });
    }),
  );
}

/**
 * Resolves when `node` is Ready or `signal` aborts; rejects when `timeoutMs` (0: none) passes
 * first.
 */
function readyWithin(node: VirtualNode, timeoutMs: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            reject(
              new VirtualKubeletError(
                'Unavailable',
                `node ${node.nodeName} was not ready within ${String(timeoutMs / 1000)} s of leading it`,
              ),
            );
          }, timeoutMs)
        : undefined;
    void Promise.race([node.whenReady(), abortOf(signal)]).then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** What `createProvider` gets for one node. */
function providerContext(opts: RunOptions, spec: NodeSpec, logger: Logger): ProviderContext {
  return {
    nodeName: spec.name,
    nodeIP: opts.nodeIp,
    ...(opts.podCidr !== undefined ? { podCIDR: opts.podCidr } : {}),
    clusterDNS: opts.clusterDns,
    clusterDomain: opts.clusterDomain,
    logger: logger.child({
      provider: spec.provider,
      ...(opts.nodes ? { node: spec.name } : {}),
    }),
    ...(spec.providerConfig ? { configPath: spec.providerConfig } : {}),
  };
}

/** One node of `--nodes` (or the single node of the flags). */
export interface NodeSpec {
  readonly name: string;
  readonly provider: string;
  readonly providerConfig?: string;
  readonly port: number;
}

interface NodeSetup {
  readonly spec: NodeSpec;
  readonly serving: ServingCertificate;
  readonly options: Omit<VirtualNodeOptions, 'client'>;
}

const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Reads a `--nodes` file (JSON or YAML): `{"nodes": [{"name", "provider"?, "providerConfig"?,
 * "port"?}]}`. Missing fields come from `--provider`, `--provider-config` and `--listen-port`
 * plus the node's index. Any mistake is one readable error naming the file and the entry.
 */
export async function readNodesFile(path: string, opts: RunOptions): Promise<NodeSpec[]> {
  const bad = (what: string): VirtualKubeletError =>
    new VirtualKubeletError('InvalidInput', `--nodes ${path}: ${what}`);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw bad(`cannot read it: ${errorMessage(err)}`);
  }
  let doc: unknown;
  try {
    doc = loadYaml(text);
  } catch (err) {
    throw bad(`not valid JSON or YAML: ${errorMessage(err).split('\n')[0] ?? ''}`);
  }
  const list = (doc as { nodes?: unknown } | null)?.nodes;
  if (!Array.isArray(list) || list.length === 0)
    throw bad('expected {"nodes": [{"name": ...}, ...]} with at least one node');
  const names = new Set<string>();
  const ports = new Set<number>();
  return list.map((raw: unknown, i): NodeSpec => {
    const at = `nodes[${String(i)}]`;
    if (typeof raw !== 'object' || raw === null) throw bad(`${at} is not an object`);
    const e = raw as Record<string, unknown>;
    const known = new Set(['name', 'provider', 'providerConfig', 'port']);
    const unknown = Object.keys(e).filter((k) => !known.has(k));
    if (unknown.length > 0) throw bad(`${at} has unknown field(s) ${unknown.join(', ')}`);
    const name = e.name;
    if (typeof name !== 'string' || !DNS_SUBDOMAIN.test(name) || name.length > 253)
      throw bad(`${at}.name must be a DNS subdomain (lower case), got ${JSON.stringify(name)}`);
    if (names.has(name)) throw bad(`node '${name}' is listed twice`);
    names.add(name);
    const provider = e.provider ?? opts.provider;
    if (typeof provider !== 'string' || !providerNames().includes(provider))
      throw bad(
        `${at}.provider must be one of ${providerNames().join(', ')}, got ${JSON.stringify(provider)}`,
      );
    const providerConfig = e.providerConfig ?? opts.providerConfig;
    if (providerConfig !== undefined && typeof providerConfig !== 'string')
      throw bad(`${at}.providerConfig must be a path`);
    const port = e.port ?? opts.listenPort + i;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
      throw bad(`${at}.port must be a port number, got ${JSON.stringify(port)}`);
    if (port !== 0 && ports.has(port)) throw bad(`port ${String(port)} is used twice`);
    ports.add(port);
    return { name, provider, port, ...(providerConfig ? { providerConfig } : {}) };
  });
}

/** The options of one virtual node, from the flags and its entry. */
function nodeOptions(
  opts: RunOptions,
  spec: NodeSpec,
  provider: Provider,
  serving: ServingCertificate,
  client: KubeClient,
  kc: KubeConfig,
): Omit<VirtualNodeOptions, 'client'> {
  return {
    nodeName: spec.name,
    provider,
    closeProvider: true,
    nodeIP: opts.nodeIp,
    labels: opts.labels,
    taints: opts.disableTaint
      ? []
      : [{ ...taintFromEnv(spec.provider), ...(opts.taint ? { key: opts.taint } : {}) }],
    kubeletPort: spec.port,
    kubeletVersion: `${KUBERNETES_VERSION}-vk-${VERSION}`,
    operatingSystem: opts.os,
    node: {
      leaseDurationSeconds: opts.nodeLeaseDurationSeconds,
      statusUpdateIntervalMs: opts.nodeStatusUpdateFrequency,
    },
    api: {
      cert: serving.cert,
      key: serving.key,
      ...clientCA(opts, kc),
      port: spec.port,
      authorizer:
        opts.authorizationMode === 'AlwaysAllow'
          ? allowAll
          : new WebhookAuthorizer({ client, nodeName: spec.name }),
      timeouts: {
        streamIdleTimeoutMs: opts.streamIdleTimeout,
        streamCreationTimeoutMs: opts.streamCreationTimeout,
      },
    },
    pods: {
      workers: opts.podSyncWorkers,
      fullResyncPeriodMs: opts.fullResyncPeriod,
      pollIntervalMs: opts.podStatusPollInterval,
      volumeRefreshPeriodMs: opts.volumeRefreshPeriod,
    },
    events: { qps: opts.eventQps, burst: opts.eventBurst },
  };
}
