// The kubelet's authorization of its own API, written from its rules (pkg/kubelet/server/auth.go,
// GetRequestAttributes, with the KubeletFineGrainedAuthz gate on as in current releases): which
// `nodes/<subresource>` a request needs, and so what each identity of the matrix must get.

/**
 * `path` is `prefix` or below it (`/stats` and `/stats/summary`, not `/statsx`); a trailing
 * slash of `prefix` does not count, as in the kubelet's isSubpath.
 */
function isSubpath(path: string, prefix: string): boolean {
  const p = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  return path === p || path.startsWith(`${p}/`);
}

/**
 * The node subresources the kubelet checks for `path`, in order (the first allowed wins): the
 * fine-grained one (pods, healthz, configz, statusz; runningpods counts as pods), then stats,
 * metrics, log (`/logs`), checkpoint, or proxy for everything else.
 */
export function kubeletSubresources(path: string): string[] {
  const out: string[] = [];
  if (isSubpath(path, '/pods')) out.push('pods');
  else if (isSubpath(path, '/healthz')) out.push('healthz');
  else if (isSubpath(path, '/configz')) out.push('configz');
  else if (isSubpath(path, '/statusz')) out.push('statusz');
  else if (isSubpath(path, '/runningpods/')) out.push('pods');
  if (isSubpath(path, '/stats')) out.push('stats');
  else if (isSubpath(path, '/metrics')) out.push('metrics');
  else if (isSubpath(path, '/logs')) out.push('log');
  else if (isSubpath(path, '/checkpoint')) out.push('checkpoint');
  else out.push('proxy');
  return out;
}

/** The kubelet's verb for an HTTP method (anything else is `get`'s empty cousin: treated as get). */
export function kubeletVerb(method: string): string {
  switch (method) {
    case 'POST':
      return 'create';
    case 'PUT':
      return 'update';
    case 'PATCH':
      return 'patch';
    case 'DELETE':
      return 'delete';
    default:
      return 'get';
  }
}

/** The identities of the matrix. */
export const IDENTITIES = [
  'anonymous',
  'untrusted-cert',
  'sa-no-rbac',
  'sa-stats-only',
  'apiserver-client',
  'node-self',
] as const;
export type Identity = (typeof IDENTITIES)[number];

/** What the API server grants an identity on `nodes/<subresource>` of the node. */
interface Grant {
  /** False: the kubelet cannot tell who it is (no credentials, or a CA it does not trust). */
  readonly authenticated: boolean;
  /** Subresources allowed, `*` for all. */
  readonly subresources: ReadonlySet<string> | '*';
}

/**
 * What each identity holds in the dev cluster: anonymous requests are refused by our kubelet API
 * (as `--anonymous-auth=false`), a certificate from an unknown CA authenticates no one; the
 * ServiceAccount without RBAC has nothing on nodes; the stats one has a ClusterRole with
 * `nodes/stats` (get, create) only; the API server's kubelet client is in `system:masters`; the
 * node itself gets no `nodes/*` subresource but status from the Node authorizer (and RBAC gives
 * `system:nodes` nothing), so it may not call its own kubelet API.
 */
export const GRANTS: Readonly<Record<Identity, Grant>> = {
  anonymous: { authenticated: false, subresources: new Set() },
  'untrusted-cert': { authenticated: false, subresources: new Set() },
  'sa-no-rbac': { authenticated: true, subresources: new Set() },
  'sa-stats-only': { authenticated: true, subresources: new Set(['stats']) },
  'apiserver-client': { authenticated: true, subresources: '*' },
  'node-self': { authenticated: true, subresources: new Set() },
};

/** What the matrix expects: 401, 403, or `allowed` (any other status: the route then decides). */
export type Expected = '401' | '403' | 'allowed';

export function expectedOutcome(identity: Identity, path: string): Expected {
  const grant = GRANTS[identity];
  if (!grant.authenticated) return '401';
  if (grant.subresources === '*') return 'allowed';
  const granted = grant.subresources;
  return kubeletSubresources(path).some((s) => granted.has(s)) ? 'allowed' : '403';
}

/** How a status reads against an expectation. */
export function outcomeOf(status: number): Expected | 'error' {
  if (status === 401) return '401';
  if (status === 403) return '403';
  if (status >= 100 && status < 600 && status !== 500) return 'allowed';
  return 'error';
}

/**
 * A request path for a route pattern: `:name` segments get `values[name]` (default `x`), an
 * optional `:name?` is left out.
 */
export function samplePath(pattern: string, values: Readonly<Record<string, string>> = {}): string {
  return (
    pattern
      .split('/')
      .filter((seg) => !seg.endsWith('?'))
      .map((seg) => (seg.startsWith(':') ? (values[seg.slice(1)] ?? 'x') : seg))
      .join('/') || '/'
  );
}
