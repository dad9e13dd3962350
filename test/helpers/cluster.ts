import * as k8s from '@kubernetes/client-node';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { TestContext } from 'node:test';
import { waitFor } from './wait.js';

/** The dev cluster that `npm test` started for this run. */
export interface TestCluster {
  readonly kubeconfigPath: string;
  readonly kubectlPath: string;
  readonly server: string;
  readonly pkiDir: string;
  /** etcd's client URL (HTTPS, client certificates of `<pkiDir>/etcd-ca.crt` only). */
  readonly etcdUrl: string;
  /** The run's scratch directory (removed when the run ends). */
  readonly dir: string;
  readonly kc: k8s.KubeConfig;
}

let cached: TestCluster | undefined;

/**
 * The shared control plane. Throws, failing the calling test, when the run has none: the reason
 * the control plane could not start, or how to run e2e tests.
 */
export function testCluster(): TestCluster {
  if (cached) return cached;
  const env = process.env;
  if (env.VK_E2E_CLUSTER_ERROR)
    throw new Error(`the control plane could not start: ${env.VK_E2E_CLUSTER_ERROR}`);
  const kubeconfigPath = env.VK_E2E_KUBECONFIG;
  if (!kubeconfigPath || !env.VK_E2E_KUBECTL || !env.VK_E2E_SERVER)
    throw new Error(
      'no control plane for e2e tests: run them through `npm test` (or `npm run test:e2e -- <file>`)',
    );
  const kc = new k8s.KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  cached = {
    kubeconfigPath,
    kubectlPath: env.VK_E2E_KUBECTL,
    server: env.VK_E2E_SERVER,
    pkiDir: env.VK_E2E_PKI_DIR ?? '',
    etcdUrl: env.VK_E2E_ETCD_URL ?? '',
    dir: env.VK_E2E_DIR ?? '',
    kc,
  };
  return cached;
}

export interface KubectlResult {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number;
}

/**
 * Runs the kubectl built with the control plane against the test cluster. Rejects on a non-zero
 * exit unless `allowFailure` is set.
 */
export function kubectl(
  args: readonly string[],
  options: { input?: string; allowFailure?: boolean; kubeconfig?: string; timeoutMs?: number } = {},
): Promise<KubectlResult> {
  const c = testCluster();
  return new Promise((resolve, reject) => {
    const child = execFile(
      c.kubectlPath,
      [...args],
      {
        env: { ...process.env, KUBECONFIG: options.kubeconfig ?? c.kubeconfigPath },
        timeout: options.timeoutMs ?? 60_000,
        maxBuffer: 64 * 1024 * 1024,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        if (code !== 0 && !options.allowFailure)
          reject(new Error(`kubectl ${args.join(' ')} exited ${String(code)}: ${stderr.trim()}`));
        else resolve({ stdout, stderr, code });
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

/** Creates a fresh namespace for one test and deletes it when the test ends. */
export async function testNamespace(t: TestContext, prefix = 'e2e'): Promise<string> {
  const { kc } = testCluster();
  const core = kc.makeApiClient(k8s.CoreV1Api);
  const slug = t.name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-|-$/g, '')
    .slice(0, 30);
  const name = `${prefix}-${slug}-${randomBytes(3).toString('hex')}`.replace(/-+/g, '-');
  await core.createNamespace({ body: { metadata: { name } } });
  t.after(async () => {
    await core.deleteNamespace({ name }).catch(() => undefined);
  });
  // Pods are refused until the controller manager has made the namespace's default account.
  await waitFor(
    async () =>
      (await core
        .readNamespacedServiceAccount({ name: 'default', namespace: name })
        .catch(() => undefined)) !== undefined,
    { what: `the default service account of ${name}` },
  );
  return name;
}

/** The fields of a pod that {@link podSummary} reads. */
interface PodLike {
  readonly spec?: { readonly nodeName?: string };
  readonly status?: {
    readonly phase?: string;
    readonly reason?: string;
    readonly message?: string;
    readonly containerStatuses?: readonly {
      readonly name: string;
      readonly restartCount?: number;
      readonly state?: {
        readonly waiting?: { readonly reason?: string };
        readonly running?: object;
        readonly terminated?: { readonly reason?: string; readonly exitCode?: number };
      };
    }[];
  };
}

/** A pod's node, phase and container states in one line, for a timeout message. */
export function podSummary(pod: PodLike): string {
  const s = pod.status;
  const containers = (s?.containerStatuses ?? []).map((c) => {
    const st = c.state ?? {};
    const [kind, why] = st.terminated
      ? ['terminated', st.terminated.reason ?? `exit ${String(st.terminated.exitCode)}`]
      : st.running
        ? ['running', '']
        : st.waiting
          ? ['waiting', st.waiting.reason ?? '']
          : ['unknown', ''];
    return `${c.name}=${kind}${why ? `(${why})` : ''} restarts ${String(c.restartCount ?? 0)}`;
  });
  return [
    `node ${pod.spec?.nodeName ?? '(none)'}`,
    `phase ${s?.phase ?? '(none)'}${s?.reason ? ` ${s.reason}` : ''}${s?.message ? `: ${s.message}` : ''}`,
    ...containers,
  ].join(', ');
}
