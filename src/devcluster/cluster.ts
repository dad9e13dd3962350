import { execFile, type ChildProcess } from 'node:child_process';
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Binaries } from './build.js';
import { formatSeconds } from './build.js';
import { ServingCsrApprover } from './csr-approver.js';
import { DevClusterError } from './errors.js';
import { ensurePki, PKI, renderKubeconfig } from './pki.js';
import { spawnOwned, stopProcess } from './process.js';
import {
  cleanUpServices,
  createDnsInterface,
  lockServices,
  resolveServices,
  servicesManifest,
  writeCorefile,
  writeKubeProxyConfig,
  type ServicesInfo,
  type ServicesOptions,
} from './services.js';

export type Component =
  | 'etcd'
  | 'kube-apiserver'
  | 'kube-controller-manager'
  | 'kube-scheduler'
  | 'metrics-server'
  | 'kube-proxy'
  | 'coredns';

export interface DevClusterOptions {
  /** Working directory: pki/, etcd data, one log per component, kubeconfigs. Created if missing. */
  readonly dir: string;
  readonly binaries: Binaries;
  /** kube-apiserver's port on 127.0.0.1. Default: a free port. */
  readonly apiserverPort?: number;
  /**
   * Run etcd with `--unsafe-no-fsync`: much faster on slow disks, loses data on a power cut.
   * Default: true (the dev cluster is disposable).
   */
  readonly etcdUnsafeNoFsync?: boolean;
  /** How long each component may take to become healthy. Default: 120 000 ms. */
  readonly componentTimeoutMs?: number;
  /**
   * Also run metrics-server, registered as `v1beta1.metrics.k8s.io`, so `kubectl top` works.
   * It scrapes kubelets every `metricResolutionSeconds` and verifies their serving certificates
   * against the cluster CA. Default: false.
   */
  readonly metricsServer?: boolean;
  /** Default: 10. */
  readonly metricResolutionSeconds?: number;
  /**
   * Also make Services and DNS work for the pods of one virtual node: kube-proxy (nftables mode,
   * on the host) and CoreDNS as `kube-dns` (10.96.0.10) on a dummy interface. Needs root,
   * iproute2 and nft, and `binaries` built with `services: true`. Only one cluster with services
   * can run on a host at a time (kube-proxy's rules are host-wide): a second one fails to start.
   * Default: off.
   */
  readonly services?: ServicesOptions;
  /**
   * Approve the kubelet-serving CSRs of nodes whose names and addresses match their Node, so an
   * agent with `--rotate-server-certificates` serves at once (see `ServingCsrApprover`); other
   * requests stay pending for `kubectl certificate approve`. Default: true.
   */
  readonly approveServingCsrs?: boolean;
  /** Extra kube-apiserver flags (`--name=value`), appended last so they win. */
  readonly extraApiserverArgs?: readonly string[];
  /** Progress lines for people. Default: discard. */
  readonly log?: (line: string) => void;
  /**
   * Called once if a component exits while the cluster is meant to be running and cannot be
   * restarted (etcd, kube-apiserver, or a component that keeps dying). Not called for a
   * component stopped with {@link DevCluster.stopComponent}.
   */
  readonly onComponentExit?: (
    component: Component,
    code: number | null,
    signal: string | null,
  ) => void;
}

/**
 * Components restarted when they exit on their own; etcd or kube-apiserver exiting on its own
 * ends the cluster (stopping either with `stopComponent` does not).
 */
const RESTARTABLE: ReadonlySet<Component> = new Set([
  'kube-controller-manager',
  'kube-scheduler',
  'metrics-server',
  // kube-proxy exits on purpose when its node appears, changes addresses or goes away.
  'kube-proxy',
  'coredns',
]);

/** Where a started cluster listens and which files it uses. */
export interface ClusterInfo {
  readonly server: string;
  readonly adminKubeconfig: string;
  readonly pkiDir: string;
  /**
   * etcd's client URL (HTTPS on 127.0.0.1). etcd admits only client certificates signed by its
   * own CA (`<pkiDir>/etcd-ca.crt`); `<pkiDir>/apiserver-etcd-client.{crt,key}` is one.
   */
  readonly etcdUrl: string;
  /** Set when the cluster runs with `services`: what pods of the node need for DNS. */
  readonly services?: ServicesInfo;
  /** Whether matching kubelet-serving CSRs are approved automatically. */
  readonly approvesServingCsrs: boolean;
  /** The pids at start; a restarted component has another (see {@link DevCluster.pid}). */
  readonly pids: Readonly<Partial<Record<Component, number>>>;
}

/** How a component is started again: the same binary, flags, ports, data and certificates. */
interface Launch {
  readonly binary: string;
  readonly args: readonly string[];
  readonly healthUrl: string;
  readonly tls: TlsOptions;
  readonly healthy: (body: string) => boolean;
}

/**
 * A real control plane on 127.0.0.1: etcd, kube-apiserver, kube-controller-manager and
 * kube-scheduler, as a normal cluster runs them (Node,RBAC authorization, NodeRestriction,
 * service accounts). Its processes cannot outlive the process that started them.
 */
export class DevCluster {
  readonly #options: DevClusterOptions;
  readonly #children = new Map<Component, ChildProcess>();
  readonly #launches = new Map<Component, Launch>();
  /** Components stopped with stopComponent: not restarted, not reported as exits. */
  readonly #paused = new Set<Component>();
  /** Restartable components that exited while etcd or the apiserver was stopped on purpose. */
  readonly #waiting = new Set<Component>();
  #info: ClusterInfo | undefined;
  #stopping = false;
  /** Stops the serving-CSR approver; set while it runs. */
  #approverStop: AbortController | undefined;
  #approverRun: Promise<void> | undefined;

  constructor(options: DevClusterOptions) {
    if (options.apiserverPort !== undefined) {
      const p = options.apiserverPort;
      if (!Number.isInteger(p) || p < 1 || p > 65535)
        throw new DevClusterError(
          'InvalidInput',
          `DevCluster: apiserverPort must be an integer port (1-65535), got ${String(p)}`,
        );
    }
    this.#servicesInfo = options.services ? resolveServices(options.services) : undefined;
    this.#options = options;
  }

  readonly #servicesInfo: ServicesInfo | undefined;
  /** Releases the host-wide services lock; set while this cluster holds it. */
  #releaseServices: (() => Promise<void>) | undefined;

  /** Set once {@link start} has resolved. */
  get info(): ClusterInfo {
    if (!this.#info) throw new DevClusterError('NotRunning', 'the dev cluster has not started');
    return this.#info;
  }

  /** Starts every component and resolves when the apiserver is ready and all are healthy. */
  async start(signal?: AbortSignal): Promise<ClusterInfo> {
    const o = this.#options;
    const say = o.log ?? (() => undefined);
    const timeoutMs = o.componentTimeoutMs ?? 120_000;
    const started = Date.now();
    const pkiDir = join(o.dir, 'pki');
    const pki = (name: string, ext: 'crt' | 'key' = 'crt'): string =>
      join(pkiDir, `${name}.${ext}`);
    await mkdir(join(o.dir, 'logs'), { recursive: true });
    await ensurePki(pkiDir);

    if (o.apiserverPort !== undefined) await assertPortFree(o.apiserverPort);
    const [
      etcdPort,
      etcdPeerPort,
      kcmPort,
      schedPort,
      freeApiPort,
      msPort,
      proxyHealthPort,
      proxyMetricsPort,
      dnsHealthPort,
      dnsReadyPort,
    ] = await freePorts(10);
    const apiPort = o.apiserverPort ?? freeApiPort ?? 0;
    const etcdUrl = `https://127.0.0.1:${String(etcdPort)}`;
    const etcdPeerUrl = `https://127.0.0.1:${String(etcdPeerPort)}`;
    const server = `https://127.0.0.1:${String(apiPort)}`;

    try {
      // First, so a second cluster with services fails before it starts anything.
      if (this.#servicesInfo) this.#releaseServices = await lockServices();
      const adminTls = {
        ca: await readFile(pki(PKI.ca)),
        cert: await readFile(pki(PKI.admin)),
        key: await readFile(pki(PKI.admin, 'key')),
      };
      // etcd admits only certificates of its own CA: the apiserver's client certificate.
      const etcdClientTls = {
        ca: await readFile(pki(PKI.etcdCa)),
        cert: await readFile(pki(PKI.apiserverEtcdClient)),
        key: await readFile(pki(PKI.apiserverEtcdClient, 'key')),
      };
      const insecure = { rejectUnauthorized: false };
      const isOk = (b: string): boolean => b.trim() === 'ok';
      this.#launch(
        'etcd',
        o.binaries.etcd,
        `${etcdUrl}/health`,
        etcdClientTls,
        (body) => body.includes('"health":"true"'),
        [
          '--name=dev',
          `--data-dir=${join(o.dir, 'etcd')}`,
          `--listen-client-urls=${etcdUrl}`,
          `--advertise-client-urls=${etcdUrl}`,
          `--cert-file=${pki(PKI.etcdServer)}`,
          `--key-file=${pki(PKI.etcdServer, 'key')}`,
          `--trusted-ca-file=${pki(PKI.etcdCa)}`,
          '--client-cert-auth=true',
          `--listen-peer-urls=${etcdPeerUrl}`,
          `--initial-advertise-peer-urls=${etcdPeerUrl}`,
          `--initial-cluster=dev=${etcdPeerUrl}`,
          `--peer-cert-file=${pki(PKI.etcdServer)}`,
          `--peer-key-file=${pki(PKI.etcdServer, 'key')}`,
          `--peer-trusted-ca-file=${pki(PKI.etcdCa)}`,
          '--peer-client-cert-auth=true',
          '--listen-metrics-urls=',
          '--auto-compaction-retention=1',
          '--quota-backend-bytes=8589934592',
          ...(o.etcdUnsafeNoFsync === false ? [] : ['--unsafe-no-fsync=true']),
        ],
      );
      await this.#waitHealthy('etcd', timeoutMs, signal);

      this.#launch('kube-apiserver', o.binaries.kubeApiserver, `${server}/readyz`, adminTls, isOk, [
        `--etcd-servers=${etcdUrl}`,
        `--etcd-cafile=${pki(PKI.etcdCa)}`,
        `--etcd-certfile=${pki(PKI.apiserverEtcdClient)}`,
        `--etcd-keyfile=${pki(PKI.apiserverEtcdClient, 'key')}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${String(apiPort)}`,
        // Loopback-only machines have no default route to derive an address from; the
        // `kubernetes` Service endpoint cannot be a loopback address, so nothing reconciles it.
        '--advertise-address=127.0.0.1',
        '--endpoint-reconciler-type=none',
        '--service-cluster-ip-range=10.96.0.0/16',
        `--tls-cert-file=${pki(PKI.apiserver)}`,
        `--tls-private-key-file=${pki(PKI.apiserver, 'key')}`,
        `--client-ca-file=${pki(PKI.ca)}`,
        '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
        `--service-account-key-file=${join(pkiDir, 'sa.pub')}`,
        `--service-account-signing-key-file=${join(pkiDir, 'sa.key')}`,
        '--authorization-mode=Node,RBAC',
        '--enable-admission-plugins=NodeRestriction',
        '--allow-privileged=true',
        `--kubelet-client-certificate=${pki(PKI.apiserverKubeletClient)}`,
        `--kubelet-client-key=${pki(PKI.apiserverKubeletClient, 'key')}`,
        '--kubelet-preferred-address-types=InternalIP,Hostname',
        // Kubelet serving certificates are verified, so they must come from the cluster CA.
        `--kubelet-certificate-authority=${pki(PKI.ca)}`,
        `--requestheader-client-ca-file=${pki(PKI.frontProxyCa)}`,
        '--requestheader-allowed-names=front-proxy-client',
        '--requestheader-username-headers=X-Remote-User',
        '--requestheader-group-headers=X-Remote-Group',
        '--requestheader-extra-headers-prefix=X-Remote-Extra-',
        `--proxy-client-cert-file=${pki(PKI.frontProxyClient)}`,
        `--proxy-client-key-file=${pki(PKI.frontProxyClient, 'key')}`,
        '--profiling=false',
        ...(o.extraApiserverArgs ?? []),
      ]);
      await this.#waitHealthy('kube-apiserver', timeoutMs, signal);

      const kubeconfig = async (name: string, stem: string): Promise<string> => {
        const path = join(o.dir, `${name}.kubeconfig`);
        const text = await renderKubeconfig({
          server,
          caFile: pki(PKI.ca),
          certFile: pki(stem),
          keyFile: pki(stem, 'key'),
        });
        await writeFile(path, text, { mode: 0o600 });
        return path;
      };
      const adminKubeconfig = await kubeconfig('admin', PKI.admin);
      const kcmKubeconfig = await kubeconfig('kube-controller-manager', PKI.controllerManager);
      const schedKubeconfig = await kubeconfig('kube-scheduler', PKI.scheduler);

      this.#launch(
        'kube-controller-manager',
        o.binaries.kubeControllerManager,
        `https://127.0.0.1:${String(kcmPort)}/healthz`,
        insecure,
        isOk,
        [
          `--kubeconfig=${kcmKubeconfig}`,
          `--authentication-kubeconfig=${kcmKubeconfig}`,
          `--authorization-kubeconfig=${kcmKubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${String(kcmPort)}`,
          '--leader-elect=false',
          '--use-service-account-credentials=true',
          `--service-account-private-key-file=${join(pkiDir, 'sa.key')}`,
          `--root-ca-file=${pki(PKI.ca)}`,
          `--cluster-signing-cert-file=${pki(PKI.ca)}`,
          `--cluster-signing-key-file=${pki(PKI.ca, 'key')}`,
          '--controllers=*,bootstrapsigner,tokencleaner',
          '--profiling=false',
        ],
      );
      this.#launch(
        'kube-scheduler',
        o.binaries.kubeScheduler,
        `https://127.0.0.1:${String(schedPort)}/healthz`,
        insecure,
        isOk,
        [
          `--kubeconfig=${schedKubeconfig}`,
          `--authentication-kubeconfig=${schedKubeconfig}`,
          `--authorization-kubeconfig=${schedKubeconfig}`,
          '--bind-address=127.0.0.1',
          `--secure-port=${String(schedPort)}`,
          '--leader-elect=false',
          '--profiling=false',
        ],
      );
      await Promise.all([
        this.#waitHealthy('kube-controller-manager', timeoutMs, signal),
        this.#waitHealthy('kube-scheduler', timeoutMs, signal),
      ]);
      // The controller manager makes each namespace's default ServiceAccount a moment after it
      // is healthy; a pod applied before then is refused (serviceaccount "default" not found).
      await this.#waitDefaultServiceAccount(server, adminTls, timeoutMs, signal);
      const approvesServingCsrs = o.approveServingCsrs ?? true;
      if (approvesServingCsrs) {
        const stop = new AbortController();
        this.#approverStop = stop;
        this.#approverRun = new ServingCsrApprover({
          server,
          tls: adminTls,
          log: say,
        }).run(stop.signal);
      }

      if (o.metricsServer) {
        await this.#startMetricsServer(
          adminKubeconfig,
          pki(PKI.ca),
          msPort ?? 0,
          timeoutMs,
          signal,
        );
      }

      if (this.#servicesInfo) {
        await this.#startServices(this.#servicesInfo, {
          adminKubeconfig,
          proxyKubeconfig: await kubeconfig('kube-proxy', PKI.kubeProxy),
          dnsKubeconfig: await kubeconfig('coredns', PKI.coredns),
          ports: [proxyHealthPort, proxyMetricsPort, dnsHealthPort, dnsReadyPort].map(
            (p) => p ?? 0,
          ),
          timeoutMs,
          signal,
        });
      }

      this.#info = {
        server,
        adminKubeconfig,
        pkiDir,
        etcdUrl,
        approvesServingCsrs,
        ...(this.#servicesInfo ? { services: this.#servicesInfo } : {}),
        pids: {
          etcd: this.pid('etcd'),
          'kube-apiserver': this.pid('kube-apiserver'),
          'kube-controller-manager': this.pid('kube-controller-manager'),
          'kube-scheduler': this.pid('kube-scheduler'),
          ...(o.metricsServer ? { 'metrics-server': this.pid('metrics-server') } : {}),
          ...(this.#servicesInfo
            ? { 'kube-proxy': this.pid('kube-proxy'), coredns: this.pid('coredns') }
            : {}),
        },
      };
      say(`control plane ready at ${server} in ${formatSeconds(Date.now() - started)}`);
      return this.#info;
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /**
   * Stops the components in reverse start order; SIGKILL after 10 s each. With services, removes
   * kube-proxy's rules and the dummy interface once kube-proxy and CoreDNS have exited.
   * Idempotent.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#approverStop?.abort();
    await this.#approverRun;
    const stop = (c: Component): Promise<void> => {
      const child = this.#children.get(c);
      return child ? stopProcess(child, 10_000) : Promise.resolve();
    };
    await Promise.all([stop('coredns'), stop('kube-proxy')]);
    const release = this.#releaseServices;
    this.#releaseServices = undefined;
    if (release && this.#servicesInfo) {
      const problems = await cleanUpServices(
        this.#options.binaries.kubeProxy,
        this.#servicesInfo.dummyInterface,
      );
      for (const p of problems) this.#options.log?.(`cleaning up the services: ${p}`);
      await release();
    }
    await Promise.all([
      stop('metrics-server'),
      stop('kube-scheduler'),
      stop('kube-controller-manager'),
    ]);
    await stop('kube-apiserver');
    await stop('etcd');
  }

  async #startMetricsServer(
    kubeconfig: string,
    caFile: string,
    port: number,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const o = this.#options;
    this.#launch(
      'metrics-server',
      o.binaries.metricsServer,
      `https://127.0.0.1:${String(port)}/livez`,
      { rejectUnauthorized: false },
      (b) => b.trim() === 'ok',
      [
        `--kubeconfig=${kubeconfig}`,
        `--authentication-kubeconfig=${kubeconfig}`,
        `--authorization-kubeconfig=${kubeconfig}`,
        '--bind-address=127.0.0.1',
        `--secure-port=${String(port)}`,
        `--cert-dir=${join(o.dir, 'metrics-server')}`,
        '--kubelet-preferred-address-types=InternalIP,Hostname',
        '--kubelet-use-node-status-port',
        `--kubelet-certificate-authority=${caFile}`,
        `--metric-resolution=${String(o.metricResolutionSeconds ?? 10)}s`,
        '--kubelet-request-timeout=5s',
      ],
    );
    await this.#waitHealthy('metrics-server', timeoutMs, signal);
    // The aggregator reaches an ExternalName service at <externalName>:<port>.
    const manifest = [
      'apiVersion: v1',
      'kind: Service',
      'metadata: {name: metrics-server, namespace: kube-system}',
      `spec: {type: ExternalName, externalName: 127.0.0.1, ports: [{name: https, port: ${String(port)}}]}`,
      '---',
      'apiVersion: apiregistration.k8s.io/v1',
      'kind: APIService',
      'metadata: {name: v1beta1.metrics.k8s.io}',
      'spec:',
      '  group: metrics.k8s.io',
      '  version: v1beta1',
      '  insecureSkipTLSVerify: true',
      '  groupPriorityMinimum: 100',
      '  versionPriority: 100',
      `  service: {name: metrics-server, namespace: kube-system, port: ${String(port)}}`,
    ].join('\n');
    await runKubectl(o.binaries.kubectl, kubeconfig, ['apply', '-f', '-'], manifest);
  }

  async #startServices(
    info: ServicesInfo,
    a: {
      adminKubeconfig: string;
      proxyKubeconfig: string;
      dnsKubeconfig: string;
      ports: number[];
      timeoutMs: number;
      signal: AbortSignal | undefined;
    },
  ): Promise<void> {
    const o = this.#options;
    const [proxyHealthPort = 0, proxyMetricsPort = 0, dnsHealthPort = 0, dnsReadyPort = 0] =
      a.ports;
    // Rules or an interface left by a cluster that was killed: this host's lock is ours now.
    await cleanUpServices(o.binaries.kubeProxy, info.dummyInterface);
    await createDnsInterface(info);
    await runKubectl(
      o.binaries.kubectl,
      a.adminKubeconfig,
      ['apply', '-f', '-'],
      servicesManifest(info),
    );
    const dir = join(o.dir, 'services');
    const proxyConfig = await writeKubeProxyConfig(info, {
      dir,
      kubeconfig: a.proxyKubeconfig,
      healthzPort: proxyHealthPort,
      metricsPort: proxyMetricsPort,
    });
    const corefile = await writeCorefile(info, {
      dir,
      kubeconfig: a.dnsKubeconfig,
      healthPort: dnsHealthPort,
      readyPort: dnsReadyPort,
    });
    const anyOk = (): boolean => true;
    this.#launch(
      'kube-proxy',
      o.binaries.kubeProxy,
      // /livez: /healthz also fails while the node is missing or unschedulable (nodeEligible).
      `http://127.0.0.1:${String(proxyHealthPort)}/livez`,
      {},
      anyOk,
      [`--config=${proxyConfig}`],
    );
    this.#launch(
      'coredns',
      o.binaries.coredns,
      `http://127.0.0.1:${String(dnsReadyPort)}/ready`,
      {},
      anyOk,
      [`-conf=${corefile}`],
    );
    await Promise.all([
      this.#waitHealthy('kube-proxy', a.timeoutMs, a.signal),
      this.#waitHealthy('coredns', a.timeoutMs, a.signal),
    ]);
  }

  /** Log file of a component. */
  logPath(component: Component): string {
    return join(this.#options.dir, 'logs', `${component}.log`);
  }

  /** Records how `component` is started, then starts it. */
  #launch(
    component: Component,
    binary: string,
    healthUrl: string,
    tls: TlsOptions,
    healthy: (body: string) => boolean,
    args: readonly string[],
  ): void {
    this.#launches.set(component, { binary, args, healthUrl, tls, healthy });
    this.#spawn(component);
  }

  #spawn(component: Component): void {
    const launch = this.#launches.get(component);
    if (!launch) throw new DevClusterError('NotRunning', `${component} was never started`);
    const child = spawnOwned(launch.binary, {
      args: launch.args,
      logPath: this.logPath(component),
    });
    this.#children.set(component, child);
    child.once('exit', (code, signal) => {
      if (this.#stopping || this.#paused.has(component)) return;
      if (this.#info && RESTARTABLE.has(component) && this.#upstreamStopped()) {
        // Clients of the apiserver give up when it is gone for long (the controller manager
        // exits when it cannot build its clients); they come back with it, not in a crash loop.
        this.#waiting.add(component);
        this.#options.log?.(
          `${component} exited (${signal ?? `code ${String(code)}`}) while the apiserver is down; it starts again with it`,
        );
        return;
      }
      if (this.#info && RESTARTABLE.has(component) && this.#restart(component)) {
        this.#options.log?.(
          `${component} exited (${signal ?? `code ${String(code)}`}); restarting it (log: ${this.logPath(component)})`,
        );
        return;
      }
      this.#options.onComponentExit?.(component, code, signal);
    });
  }

  readonly #restarts = new Map<Component, number[]>();

  /**
   * Restarts a component the cluster can live without for a moment, as a process supervisor
   * would: at most 5 times a minute, after 1 s. False when it keeps dying (then it counts as
   * dead).
   */
  #restart(component: Component): boolean {
    const now = Date.now();
    const recent = (this.#restarts.get(component) ?? []).filter((t) => now - t < 60_000);
    if (recent.length >= 5) return false;
    recent.push(now);
    this.#restarts.set(component, recent);
    const dead = this.#children.get(component);
    setTimeout(() => {
      // Stopped on purpose meanwhile, or started again by startComponent: left as it is.
      if (this.#stopping || this.#paused.has(component)) return;
      if (this.#children.get(component) !== dead) return;
      if (this.#upstreamStopped()) this.#waiting.add(component);
      else this.#spawn(component);
    }, 1_000).unref();
    return true;
  }

  /**
   * Stops one component of the running cluster (SIGTERM; SIGKILL after `graceMs`, default
   * 10 000 ms; `graceMs: 0` kills at once, as a crash would) and resolves once it has exited.
   * It stays stopped until {@link startComponent}: it is not restarted, its exit is not reported
   * to `onComponentExit`, and a stopped etcd or kube-apiserver does not end the cluster (the
   * other components see an outage, as in a real one). Stopping a stopped component does nothing.
   * Throws `NotRunning` before {@link start} has resolved or for a component this cluster does
   * not run (metrics-server without `metricsServer`).
   */
  async stopComponent(component: Component, options: { graceMs?: number } = {}): Promise<void> {
    this.#assertManaged(component);
    this.#paused.add(component);
    const child = this.#children.get(component);
    if (!child) return;
    const graceMs = options.graceMs ?? 10_000;
    const running = child.exitCode === null && child.signalCode === null;
    if (graceMs === 0 && child.pid !== undefined && running) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await exited;
      return;
    }
    await stopProcess(child, graceMs);
  }

  /**
   * Starts a component stopped with {@link stopComponent} again, with the same binary, flags,
   * ports, data directory and certificates, and resolves when it is healthy again (for the
   * apiserver: `/readyz` answers ok), within `componentTimeoutMs`. A controller manager,
   * scheduler or metrics-server that exited while etcd or the apiserver was stopped is started
   * once both run again, and waited for too. A component that runs is left as it is. Throws `StartFailed` (the component stays stopped) or `Aborted` as {@link start}
   * does.
   */
  async startComponent(component: Component, signal?: AbortSignal): Promise<void> {
    this.#assertManaged(component);
    if (!this.#paused.has(component)) return;
    const child = this.#children.get(component);
    // A stop still in progress finishes first, so the ports are free again.
    if (child && child.exitCode === null && child.signalCode === null)
      await new Promise<void>((resolve) => child.once('exit', () => resolve()));
    this.#paused.delete(component);
    this.#waiting.delete(component);
    this.#restarts.delete(component);
    this.#spawn(component);
    const timeoutMs = this.#options.componentTimeoutMs ?? 120_000;
    try {
      await this.#waitHealthy(component, timeoutMs, signal);
    } catch (err) {
      this.#paused.add(component);
      const started = this.#children.get(component);
      if (started) await stopProcess(started, 10_000);
      throw err;
    }
    if (this.#upstreamStopped()) return;
    // The components that gave up during the outage come back with the apiserver.
    const back = [...this.#waiting];
    this.#waiting.clear();
    for (const c of back) {
      this.#restarts.delete(c);
      this.#spawn(c);
    }
    await Promise.all(back.map((c) => this.#waitHealthy(c, timeoutMs, signal)));
  }

  /** Whether etcd or the apiserver is stopped on purpose, so their clients cannot run. */
  #upstreamStopped(): boolean {
    return this.#paused.has('etcd') || this.#paused.has('kube-apiserver');
  }

  /** Whether the component was stopped with {@link stopComponent} and not started since. */
  isStopped(component: Component): boolean {
    return this.#paused.has(component);
  }

  /** The pid of the component's current process, or 0 when it has none. */
  pid(component: Component): number {
    const child = this.#children.get(component);
    return child && child.exitCode === null && child.signalCode === null ? (child.pid ?? 0) : 0;
  }

  #assertManaged(component: Component): void {
    if (!this.#info || this.#stopping)
      throw new DevClusterError('NotRunning', 'the dev cluster is not running');
    if (!this.#launches.has(component))
      throw new DevClusterError('NotRunning', `this dev cluster does not run ${component}`);
  }

  async #waitDefaultServiceAccount(
    server: string,
    tls: TlsOptions,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const url = `${server}/api/v1/namespaces/default/serviceaccounts/default`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (signal?.aborted)
        throw new DevClusterError('Aborted', 'start of the control plane was cancelled');
      let last: string;
      try {
        const { status } = await get(url, tls);
        if (status === 200) return;
        last = `HTTP ${String(status)}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline)
        throw await this.#failure(
          'kube-controller-manager',
          `the default ServiceAccount did not appear within ${formatSeconds(timeoutMs)} (${last})`,
        );
      await delay(100);
    }
  }

  async #waitHealthy(
    component: Component,
    timeoutMs: number,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    const child = this.#children.get(component);
    const launch = this.#launches.get(component);
    if (!launch) throw new DevClusterError('NotRunning', `${component} was never started`);
    const deadline = Date.now() + timeoutMs;
    let last: string;
    for (;;) {
      if (signal?.aborted)
        throw new DevClusterError('Aborted', `start of ${component} was cancelled`);
      if (child && (child.exitCode !== null || child.signalCode !== null)) {
        throw await this.#failure(
          component,
          `${component} exited (${child.signalCode ?? `code ${String(child.exitCode)}`}) while starting`,
        );
      }
      try {
        const { status, body } = await get(launch.healthUrl, launch.tls);
        if (status === 200 && launch.healthy(body)) return;
        last = `HTTP ${String(status)}: ${body.trim().split('\n').slice(-3).join(' | ')}`;
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) {
        throw await this.#failure(
          component,
          `${component} was not healthy after ${formatSeconds(timeoutMs)} (last answer: ${last})`,
        );
      }
      await delay(100);
    }
  }

  async #failure(component: Component, message: string): Promise<DevClusterError> {
    const logPath = this.logPath(component);
    const text = await readFile(logPath, 'utf8').catch(() => '');
    const tail = text.trimEnd().split('\n').slice(-8).join('\n    ');
    const hint = /address already in use/.test(text)
      ? '\n  a port it needs is in use: stop what listens there or choose another port'
      : '';
    return new DevClusterError(
      'StartFailed',
      `${message}; log: ${logPath}${hint}${tail ? `\n  last lines:\n    ${tail}` : ''}`,
      { logPath },
    );
  }
}

function runKubectl(
  kubectl: string,
  kubeconfig: string,
  args: string[],
  input: string,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      kubectl,
      [`--kubeconfig=${kubeconfig}`, ...args],
      (err, _out, stderr) => {
        if (err)
          reject(
            new DevClusterError(
              'StartFailed',
              `kubectl ${args.join(' ')} failed: ${stderr.trim()}`,
            ),
          );
        else resolve();
      },
    );
    child.stdin?.end(input);
  });
}

interface TlsOptions {
  readonly ca?: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly rejectUnauthorized?: boolean;
}

function get(url: string, tls: TlsOptions): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = url.startsWith('https:') ? httpsRequest : httpRequest;
    const req = request(url, { ...tls, timeout: 2000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

/** Asks the kernel for `count` distinct free ports on 127.0.0.1. */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const s = createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => {
    const a = s.address();
    return typeof a === 'object' && a ? a.port : 0;
  });
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Throws PortInUse when something already listens on 127.0.0.1:`port`. */
export async function assertPortFree(port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const s = createServer();
    s.once('error', (err: NodeJS.ErrnoException) => {
      reject(
        err.code === 'EADDRINUSE'
          ? new DevClusterError(
              'PortInUse',
              `port ${String(port)} on 127.0.0.1 is in use: stop what listens there or choose another port (--port)`,
            )
          : err,
      );
    });
    s.listen(port, '127.0.0.1', () => s.close(() => resolve()));
  });
}
