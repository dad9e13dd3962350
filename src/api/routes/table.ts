import {
  hasCapability,
  notImplementedMessage,
  type Capability,
  type CapabilityInterfaces,
  type Provider,
} from '../../provider.js';
import type { RequestAttributes } from '../auth.js';
import { verbOf } from '../auth.js';
import { HttpError, type HttpCall, type RouteParams, type UpgradeCall } from './context.js';
import { refuseWithoutUpgrade, serveRun, upgradeAttach, upgradeExec } from './exec.js';
import { serveLogs } from './logs.js';
import { podList, runtimePodOf } from './pods.js';
import { upgradePortForward } from './port-forward.js';

/** One route of the kubelet API. */
export interface Route {
  /**
   * The path: literal segments, `:name` for one segment given to the handler as `name`, and
   * `:name?` for one that may be left out.
   */
  readonly pattern: string;
  /** The HTTP methods it answers; others get 405. */
  readonly methods: readonly string[];
  /** What the provider must implement; without it the route answers 501, naming it. */
  readonly capability: Capability | undefined;
  /**
   * The node subresources a SubjectAccessReview checks, in order; the first one allowed wins
   * (the kubelet's fine-grained authorization, with `proxy` as the catch-all).
   */
  readonly subresources: readonly string[];
  /** Answers a plain HTTP request. */
  serve(call: HttpCall): Promise<void>;
  /** Answers a request to upgrade the connection; without it, such a request gets 404. */
  readonly upgrade?: (call: UpgradeCall) => Promise<void>;
}

type ProviderWith<C extends Capability | undefined> = C extends Capability
  ? Provider & CapabilityInterfaces[C]
  : Provider;

interface RouteDefinition<C extends Capability | undefined> {
  readonly pattern: string;
  readonly methods: readonly string[];
  readonly capability: C;
  readonly subresources: readonly string[];
  readonly serve: (call: HttpCall, provider: ProviderWith<C>) => Promise<void>;
  readonly upgrade?: (call: UpgradeCall, provider: ProviderWith<C>) => Promise<void>;
}

/** A table entry whose handlers get the provider only once it has the route's capability. */
function route<C extends Capability | undefined>(d: RouteDefinition<C>): Route {
  const provider = (p: Provider): ProviderWith<C> => {
    if (d.capability !== undefined && !hasCapability(p, d.capability))
      throw new HttpError(501, notImplementedMessage(d.capability));
    // Checked just above for a capability; any provider will do for a route without one.
    return p as ProviderWith<C>;
  };
  const { upgrade } = d;
  return {
    pattern: d.pattern,
    methods: d.methods,
    capability: d.capability,
    subresources: d.subresources,
    serve: (call) => d.serve(call, provider(call.kubelet.provider)),
    ...(upgrade ? { upgrade: (call) => upgrade(call, provider(call.kubelet.provider)) } : {}),
  };
}

const json = (call: HttpCall, body: unknown): Promise<void> => {
  call.res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  return Promise.resolve();
};

/** Every route of the kubelet API. */
export const ROUTES: readonly Route[] = [
  route({
    pattern: '/healthz/:check?',
    methods: ['GET', 'HEAD'],
    capability: undefined,
    subresources: ['healthz', 'proxy'],
    serve: (call) => {
      call.res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('ok');
      return Promise.resolve();
    },
  }),
  route({
    pattern: '/pods',
    methods: ['GET'],
    capability: undefined,
    subresources: ['pods', 'proxy'],
    // The API server's pod objects, from the informer: what was asked for, nothing resolved.
    serve: (call) => json(call, podList(call.kubelet.pods.listPods())),
  }),
  route({
    pattern: '/runningpods',
    methods: ['GET'],
    capability: undefined,
    subresources: ['pods', 'proxy'],
    // The provider's pods carry resolved values (Secrets included): only what the runtime knows.
    serve: async (call, p) => json(call, podList((await p.getPods(call.signal)).map(runtimePodOf))),
  }),
  route({
    pattern: '/configz',
    methods: ['GET'],
    capability: undefined,
    subresources: ['configz', 'proxy'],
    serve: (call) =>
      json(call, {
        kubeletconfig: {
          kind: 'KubeletConfiguration',
          apiVersion: 'kubelet.config.k8s.io/v1beta1',
          port: call.kubelet.port(),
          authentication: { anonymous: { enabled: false }, webhook: { enabled: true } },
          authorization: { mode: 'Webhook' },
        },
      }),
  }),
  route({
    pattern: '/stats/summary',
    methods: ['GET', 'POST'],
    capability: 'stats',
    subresources: ['stats'],
    serve: async (call, p) => json(call, await p.getStatsSummary(call.signal)),
  }),
  route({
    pattern: '/metrics',
    methods: ['GET'],
    capability: undefined,
    subresources: ['metrics'],
    serve: async (call) => {
      const { registry } = call.kubelet;
      call.res
        .writeHead(200, { 'content-type': registry.contentType })
        .end(await registry.metrics());
    },
  }),
  route({
    pattern: '/metrics/resource',
    methods: ['GET'],
    capability: 'metricsResource',
    subresources: ['metrics'],
    serve: async (call, p) => {
      const text = await p.getMetricsResource(call.signal);
      call.res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' }).end(text);
    },
  }),
  route({
    pattern: '/containerLogs/:namespace/:pod/:container',
    methods: ['GET'],
    capability: 'logs',
    subresources: ['proxy'],
    serve: serveLogs,
  }),
  route({
    pattern: '/exec/:namespace/:pod/:uid?/:container',
    methods: ['GET', 'POST'],
    capability: 'exec',
    subresources: ['proxy'],
    serve: refuseWithoutUpgrade,
    upgrade: upgradeExec,
  }),
  route({
    pattern: '/attach/:namespace/:pod/:uid?/:container',
    methods: ['GET', 'POST'],
    capability: 'attach',
    subresources: ['proxy'],
    serve: refuseWithoutUpgrade,
    upgrade: upgradeAttach,
  }),
  route({
    pattern: '/portForward/:namespace/:pod/:uid?',
    methods: ['GET', 'POST'],
    capability: 'portForward',
    subresources: ['proxy'],
    serve: refuseWithoutUpgrade,
    upgrade: upgradePortForward,
  }),
  route({
    pattern: '/run/:namespace/:pod/:uid?/:container',
    methods: ['POST'],
    capability: 'exec',
    subresources: ['proxy'],
    serve: serveRun,
  }),
];

/** The request target as a URL, or undefined for one no URL can be made of (`//`, `http://`). */
export function parseTarget(target: string | undefined): URL | undefined {
  try {
    return new URL(target ?? '/', 'https://kubelet');
  } catch {
    return undefined;
  }
}

/** `..` segments (also percent-encoded) or empty segments in the raw request target. */
export function hasTraversal(target: string): boolean {
  const path = (target.split('?')[0] ?? '').replace(/%2e/gi, '.').replace(/%2f/gi, '/');
  return path
    .split('/')
    .some(
      (seg, i) =>
        seg === '..' || seg === '.' || (seg === '' && i > 0 && i < path.split('/').length - 1),
    );
}

/** What a path resolves to: a route and its parameters, or the routes its first segment names. */
export type RouteMatch =
  | { readonly route: Route; readonly params: RouteParams }
  | { readonly route: undefined; readonly family: readonly Route[] };

const segmentsOf = (path: string): string[] => {
  const segments = path.split('/').slice(1);
  // One trailing slash names the same resource (`/runningpods/`).
  if (segments.length > 1 && segments.at(-1) === '') segments.pop();
  return segments;
};

const firstSegment = (pattern: string): string => segmentsOf(pattern)[0] ?? '';

/** The parameters of `path` under `pattern`, or undefined when it does not match. */
export function matchPattern(pattern: string, path: string): RouteParams | undefined {
  const want = segmentsOf(pattern);
  const got = segmentsOf(path);
  const optional = want.filter((s) => s.endsWith('?')).length;
  if (got.length > want.length || got.length < want.length - optional) return undefined;
  // Optional segments are all present or all left out.
  const used = got.length === want.length ? want : want.filter((s) => !s.endsWith('?'));
  const params: Record<string, string> = {};
  for (const [i, w] of used.entries()) {
    const g = got[i] ?? '';
    if (w.startsWith(':')) {
      if (g === '') return undefined;
      params[w.slice(1).replace(/\?$/, '')] = g;
    } else if (w !== g) return undefined;
  }
  return params;
}

/**
 * The route for `path`; for a path whose first segment only names routes (`/stats/other`),
 * those routes, so the caller can say what it expected; undefined for any other path.
 */
export function findRoute(path: string, routes: readonly Route[] = ROUTES): RouteMatch | undefined {
  for (const r of routes) {
    const params = matchPattern(r.pattern, path);
    if (params) return { route: r, params };
  }
  const first = segmentsOf(path)[0] ?? '';
  const family = routes.filter((r) => firstSegment(r.pattern) === first);
  return family.length > 0 ? { route: undefined, family } : undefined;
}

/** The SubjectAccessReview attributes of a request, from its route (`proxy` for no route). */
export function authorizationOf(
  method: string | undefined,
  match: RouteMatch | undefined,
): RequestAttributes {
  const route = match?.route ?? (match ? match.family[0] : undefined);
  return { verb: verbOf(method), subresources: route?.subresources ?? ['proxy'] };
}

/** A bounded label for metrics: the route's first segment, or `other`. */
export function routeLabel(match: RouteMatch | undefined): string {
  const route = match?.route ?? (match ? match.family[0] : undefined);
  return route ? `/${firstSegment(route.pattern)}` : 'other';
}
