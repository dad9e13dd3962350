import { KubeConfig } from '@kubernetes/client-node';
import type {
  CoreV1Event,
  V1ConfigMap,
  V1Lease,
  V1Namespace,
  V1Node,
  V1Pod,
  V1Secret,
  V1Service,
  V1ServiceAccount,
} from '../../src/wire.js';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { TestContext } from 'node:test';
import { KubeClient } from '../../src/kube/client.js';

/** An object as the stand-in keeps it: any Kubernetes object, by its metadata. */
export interface StoredObject {
  apiVersion?: string;
  kind?: string;
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    creationTimestamp?: unknown;
    deletionTimestamp?: unknown;
    deletionGracePeriodSeconds?: number;
    finalizers?: string[];
    labels?: Record<string, string>;
    [field: string]: unknown;
  };
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
  [field: string]: unknown;
}

/** One request as the stand-in received it. */
export interface RecordedRequest {
  readonly method: string;
  /** The path without the query. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly contentType: string;
  readonly body: unknown;
}

/** Makes matching requests fail: the next `times` of them (default: every one) answer `status`. */
export interface Fault {
  readonly method?: string;
  /** Matched against the path (without the query). */
  readonly path: RegExp;
  readonly status: number;
  /** Default: `InternalError` for 5xx, `Conflict` for 409. */
  readonly reason?: string;
  /** Default: every matching request. */
  times?: number;
}

interface Change {
  readonly rv: number;
  readonly resource: string;
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED';
  readonly object: StoredObject;
}

interface Watcher {
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly selector: [string, string][];
  readonly res: ServerResponse;
}

/** The resources served, by their name in a path, with their objects' types. */
export interface Resources {
  pods: V1Pod;
  services: V1Service;
  configmaps: V1ConfigMap;
  secrets: V1Secret;
  events: CoreV1Event;
  leases: V1Lease;
  nodes: V1Node;
  namespaces: V1Namespace;
  serviceaccounts: V1ServiceAccount;
}
export type Resource = keyof Resources;

/** The resources served, and whether they live in a namespace. */
const RESOURCES: Readonly<Record<string, { namespaced: boolean; kind: string } | undefined>> = {
  pods: { namespaced: true, kind: 'Pod' },
  services: { namespaced: true, kind: 'Service' },
  configmaps: { namespaced: true, kind: 'ConfigMap' },
  secrets: { namespaced: true, kind: 'Secret' },
  events: { namespaced: true, kind: 'Event' },
  leases: { namespaced: true, kind: 'Lease' },
  nodes: { namespaced: false, kind: 'Node' },
  namespaces: { namespaced: false, kind: 'Namespace' },
  serviceaccounts: { namespaced: true, kind: 'ServiceAccount' },
};

/** List fields a strategic merge patch merges element by element, by this key. */
const MERGE_KEYS: Readonly<Record<string, string>> = {
  conditions: 'type',
  addresses: 'type',
  podIPs: 'ip',
  hostIPs: 'ip',
};

const PATH =
  /^\/(?:api\/v1|apis\/[^/]+\/[^/]+)(?:\/namespaces\/([^/]+))?\/([^/]+)(?:\/([^/]+))?(?:\/([^/]+))?$/;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The strategic merge patch directive that makes a list replace the stored one. */
const isReplace = (item: unknown): boolean => isObject(item) && item.$patch === 'replace';

/** RFC 7386 merge patch; with `strategic`, the lists of MERGE_KEYS merge by their key. */
function applyPatch(target: unknown, patch: unknown, strategic: boolean): unknown {
  if (!isObject(patch)) return structuredClone(patch);
  const out: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [field, value] of Object.entries(patch)) {
    const key = MERGE_KEYS[field];
    if (value === null) Reflect.deleteProperty(out, field);
    else if (strategic && Array.isArray(value) && value.some(isReplace))
      out[field] = structuredClone(value.filter((item) => !isReplace(item)));
    else if (strategic && key && Array.isArray(value) && Array.isArray(out[field])) {
      const merged = [...(out[field] as unknown[])];
      for (const item of value) {
        const at = merged.findIndex((m) => isObject(m) && isObject(item) && m[key] === item[key]);
        if (at >= 0) merged[at] = applyPatch(merged[at], item, true);
        else merged.push(structuredClone(item));
      }
      out[field] = merged;
    } else out[field] = applyPatch(out[field], value, strategic);
  }
  return out;
}

/** The value of a dotted field (`spec.nodeName`) of `obj`, as a field selector compares it. */
function fieldOf(obj: StoredObject, path: string): string {
  let at: unknown = obj;
  for (const part of path.split('.')) at = isObject(at) ? at[part] : undefined;
  return typeof at === 'string' ? at : '';
}

/**
 * An in-memory API server for component tests: plain HTTP on 127.0.0.1, port 0, serving the
 * requests the node and pod controllers make (list and watch with field selectors and
 * resource versions; get, create, replace, merge and strategic merge patches of objects and
 * their status; pod deletion with UID preconditions and grace periods), and a client of it.
 * Tests change objects through its methods as users and controllers of a cluster would, make
 * requests fail (`fail`) and count them (`requests`). No authentication, admission, defaulting,
 * label selectors or bookmarks. Closed when the test ends.
 */
export class FakeApi {
  readonly client: KubeClient;
  /** Every request received, in order. */
  readonly requests: RecordedRequest[] = [];
  readonly #objects = new Map<string, StoredObject>();
  readonly #changes: Change[] = [];
  readonly #watchers = new Set<Watcher>();
  readonly #faults: Fault[] = [];
  #rv = 0;

  private constructor(client: KubeClient) {
    this.client = client;
  }

  static async start(t: TestContext): Promise<FakeApi> {
    const self: { api?: FakeApi } = {};
    const server = createServer((req, res) => {
      self.api?.handle(req, res).catch((err: unknown) => {
        res.writeHead(500).end(String(err));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    assert.ok(address && typeof address === 'object');
    const kc = new KubeConfig();
    kc.loadFromOptions({
      clusters: [
        { name: 'fake', server: `http://127.0.0.1:${String(address.port)}`, skipTLSVerify: true },
      ],
      users: [{ name: 'u' }],
      contexts: [{ name: 'fake', cluster: 'fake', user: 'u' }],
      currentContext: 'fake',
    });
    const api = new FakeApi(await KubeClient.create(kc));
    self.api = api;
    t.after(async () => {
      api.client.close();
      for (const w of api.#watchers) w.res.end();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    });
    return api;
  }

  /** Makes matching requests fail; see {@link Fault}. Returns the fault, to read `times` left. */
  fail(fault: Fault): Fault {
    this.#faults.push(fault);
    return fault;
  }

  /** The requests received whose method is `method` and whose path matches `path`. */
  count(method: string, path: RegExp): number {
    return this.requests.filter((r) => r.method === method && path.test(r.path)).length;
  }

  /** A copy of the object (the stand-in keeps JSON, as sent), or undefined. `namespace` is ignored for cluster-scoped resources. */
  get<R extends Resource>(resource: R, namespace: string, name: string): Resources[R] | undefined {
    const obj = this.#objects.get(this.#key(resource, namespace, name));
    return obj === undefined ? undefined : (structuredClone(obj) as unknown as Resources[R]);
  }

  /** Copies of every object of `resource` (in `namespace`, if given). */
  list<R extends Resource>(resource: R, namespace?: string): Resources[R][] {
    return this.#select(resource, namespace, []).map(
      (o) => structuredClone(o) as unknown as Resources[R],
    );
  }

  /** Creates an object, as `POST` does (a uid, a resource version, a creation time). */
  create<R extends Resource>(resource: R, obj: Resources[R]): Resources[R] {
    return this.#create(resource, obj) as unknown as Resources[R];
  }

  /** Changes an object in place, as an `Update` by a user or a controller would. */
  update<R extends Resource>(
    resource: R,
    namespace: string,
    name: string,
    change: (obj: Resources[R]) => void,
  ): Resources[R] {
    const obj = this.#objects.get(this.#key(resource, namespace, name));
    assert.ok(obj, `${resource} ${namespace}/${name} exists`);
    const next = structuredClone(obj);
    change(next as unknown as Resources[R]);
    return this.#store(resource, next) as unknown as Resources[R];
  }

  /**
   * Deletes a pod as `kubectl delete` does: with a grace period (default: the pod's
   * `terminationGracePeriodSeconds`, or 30 s) it is marked for deletion and left to the kubelet;
   * with 0 it is removed (once its finalizers are gone).
   */
  deletePod(namespace: string, name: string, gracePeriodSeconds?: number): void {
    const at = this.#key('pods', namespace, name);
    const pod = this.#objects.get(at);
    assert.ok(pod, `pod ${namespace}/${name} exists`);
    this.#deletePod(pod, gracePeriodSeconds);
  }

  /** Removes an object at once (for a Node, as `kubectl delete node` does). */
  remove(resource: Resource, namespace: string, name: string): void {
    const obj = this.#objects.get(this.#key(resource, namespace, name));
    assert.ok(obj, `${resource} ${namespace}/${name} exists`);
    this.#remove(resource, obj);
  }

  #key(resource: string, namespace: string | undefined, name: string): string {
    const namespaced = RESOURCES[resource]?.namespaced ?? true;
    return `${resource}/${namespaced ? (namespace ?? '') : ''}/${name}`;
  }

  #keyOf(resource: string, obj: StoredObject): string {
    return this.#key(resource, obj.metadata?.namespace, obj.metadata?.name ?? '');
  }

  #select(
    resource: string,
    namespace: string | undefined,
    selector: [string, string][],
  ): StoredObject[] {
    const prefix = `${resource}/`;
    return [...this.#objects]
      .filter(([key]) => key.startsWith(prefix))
      .map(([, obj]) => obj)
      .filter((obj) => matches(obj, namespace, selector));
  }

  #record(resource: string, type: Change['type'], obj: StoredObject): void {
    const change: Change = { rv: this.#rv, resource, type, object: structuredClone(obj) };
    this.#changes.push(change);
    for (const w of this.#watchers) {
      if (w.resource === resource && matches(obj, w.namespace, w.selector))
        w.res.write(`${JSON.stringify({ type, object: change.object })}\n`);
    }
  }

  #create(resource: string, input: StoredObject): StoredObject {
    const obj = structuredClone(input);
    const info = RESOURCES[resource];
    obj.kind ??= info?.kind;
    obj.metadata ??= {};
    obj.metadata.uid = randomUUID();
    obj.metadata.creationTimestamp = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    if (info?.namespaced === false) delete obj.metadata.namespace;
    if (this.#objects.has(this.#keyOf(resource, obj)))
      throw new HttpError(409, 'AlreadyExists', `${resource} "${obj.metadata.name ?? ''}" exists`);
    return this.#store(resource, obj);
  }

  /** Stores a new version of `obj`, or removes it when its deletion is complete. */
  #store(resource: string, obj: StoredObject): StoredObject {
    const key = this.#keyOf(resource, obj);
    const existed = this.#objects.has(key);
    const m = (obj.metadata ??= {});
    if (m.deletionTimestamp && m.deletionGracePeriodSeconds === 0 && !m.finalizers?.length) {
      if (existed) this.#remove(resource, obj);
      return obj;
    }
    m.resourceVersion = String(++this.#rv);
    this.#objects.set(key, obj);
    this.#record(resource, existed ? 'MODIFIED' : 'ADDED', obj);
    return structuredClone(obj);
  }

  #remove(resource: string, obj: StoredObject): void {
    this.#objects.delete(this.#keyOf(resource, obj));
    const gone = structuredClone(obj);
    (gone.metadata ??= {}).resourceVersion = String(++this.#rv);
    this.#record(resource, 'DELETED', gone);
  }

  #deletePod(pod: StoredObject, gracePeriodSeconds: number | undefined): StoredObject {
    const m = pod.metadata ?? {};
    const phase = pod.status?.phase;
    const spec = pod.spec ?? {};
    // As the API server does: a pod no kubelet runs (unbound, or finished) goes at once.
    const immediate = !spec.nodeName || phase === 'Succeeded' || phase === 'Failed';
    const asked =
      gracePeriodSeconds ??
      (typeof spec.terminationGracePeriodSeconds === 'number'
        ? spec.terminationGracePeriodSeconds
        : 30);
    const grace = immediate ? 0 : asked;
    if (m.deletionTimestamp && (m.deletionGracePeriodSeconds ?? 0) <= grace) return pod;
    const next = structuredClone(pod);
    next.metadata = {
      ...next.metadata,
      deletionTimestamp: m.deletionTimestamp ?? new Date().toISOString().replace(/\.\d{3}Z$/, 'Z'),
      deletionGracePeriodSeconds: grace,
    };
    return this.#store('pods', next);
  }

  /** Answers one request. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    const body: unknown = text ? JSON.parse(text) : undefined;
    const contentType = req.headers['content-type'] ?? '';
    this.requests.push({ method, path: url.pathname, query: url.searchParams, contentType, body });
    const send = (status: number, payload: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(payload));
    };
    const fault = this.#faults.find(
      (f) => (f.method ?? method) === method && f.path.test(url.pathname) && f.times !== 0,
    );
    if (fault) {
      if (fault.times !== undefined) fault.times--;
      const reason = fault.reason ?? (fault.status === 409 ? 'Conflict' : 'InternalError');
      send(fault.status, status(fault.status, reason, `injected ${reason}`));
      return;
    }
    try {
      const answer = this.#route(method, url, body, contentType, res);
      if (answer !== undefined) send(answer[0], answer[1]);
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      send(err.status, status(err.status, err.reason, err.message));
    }
  }

  /** The status and body of the answer, or undefined for a watch (which answers itself). */
  #route(
    method: string,
    url: URL,
    body: unknown,
    contentType: string,
    res: ServerResponse,
  ): [number, unknown] | undefined {
    const m = PATH.exec(url.pathname);
    const resource = m?.[2] ?? '';
    if (!m || !RESOURCES[resource]) throw new HttpError(404, 'NotFound', `no ${url.pathname}`);
    const [namespace, name, sub] = [m[1], m[3], m[4]];
    const selector = (url.searchParams.get('fieldSelector') ?? '')
      .split(',')
      .filter(Boolean)
      .map((s) => s.split('=') as [string, string]);
    if (name === undefined) {
      if (method === 'GET' && url.searchParams.get('watch') === 'true') {
        this.#watch(resource, namespace, selector, url.searchParams, res);
        return undefined;
      }
      if (method === 'GET') {
        const items = this.#select(resource, namespace, selector);
        return [200, { kind: 'List', metadata: { resourceVersion: String(this.#rv) }, items }];
      }
      if (method === 'POST') {
        const obj = structuredClone(body) as StoredObject;
        if (namespace !== undefined) (obj.metadata ??= {}).namespace = namespace;
        return [201, this.#create(resource, obj)];
      }
      throw new HttpError(405, 'MethodNotAllowed', `${method} ${url.pathname}`);
    }
    const current = this.#objects.get(this.#key(resource, namespace, name));
    if (!current) throw new HttpError(404, 'NotFound', `${resource} "${name}" not found`);
    const given = body as StoredObject | undefined;
    if (method === 'GET') return [200, current];
    if (method === 'PUT') {
      const rv = given?.metadata?.resourceVersion;
      if (rv !== undefined && rv !== current.metadata?.resourceVersion)
        throw new HttpError(409, 'Conflict', `${resource} "${name}" was modified`);
      const next = structuredClone(given ?? {});
      next.metadata = { ...next.metadata, uid: current.metadata?.uid };
      if (sub === 'status') next.spec = current.spec;
      else next.status = current.status;
      return [200, this.#store(resource, next)];
    }
    if (method === 'PATCH') {
      const uid = given?.metadata?.uid;
      if (uid !== undefined && uid !== current.metadata?.uid)
        throw new HttpError(409, 'Conflict', `the UID in the precondition (${uid}) differs`);
      const strategic = contentType.includes('strategic');
      const patch = structuredClone(given ?? {});
      // The status subresource takes only the status; the object itself everything else.
      if (sub === 'status') {
        const next = structuredClone(current);
        next.status = applyPatch(current.status, patch.status ?? {}, strategic) as
          StoredObject['status'] | undefined;
        return [200, this.#store(resource, next)];
      }
      delete patch.status;
      const next = applyPatch(current, patch, strategic) as StoredObject;
      (next.metadata ??= {}).uid = current.metadata?.uid;
      return [200, this.#store(resource, next)];
    }
    if (method === 'DELETE') {
      const options = (body ?? {}) as {
        gracePeriodSeconds?: number;
        preconditions?: { uid?: string };
      };
      const uid = options.preconditions?.uid;
      if (uid !== undefined && uid !== current.metadata?.uid)
        throw new HttpError(409, 'Conflict', `the UID in the precondition (${uid}) differs`);
      const grace = url.searchParams.get('gracePeriodSeconds');
      if (resource === 'pods')
        return [
          200,
          this.#deletePod(
            current,
            options.gracePeriodSeconds ?? (grace === null ? undefined : Number(grace)),
          ),
        ];
      this.#remove(resource, current);
      return [200, status(200, '', 'deleted')];
    }
    throw new HttpError(405, 'MethodNotAllowed', `${method} ${url.pathname}`);
  }

  /** Streams the changes after `resourceVersion`, then every change as it happens. */
  #watch(
    resource: string,
    namespace: string | undefined,
    selector: [string, string][],
    query: URLSearchParams,
    res: ServerResponse,
  ): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const from = Number(query.get('resourceVersion') || this.#rv);
    for (const c of this.#changes) {
      if (c.rv > from && c.resource === resource && matches(c.object, namespace, selector))
        res.write(`${JSON.stringify({ type: c.type, object: c.object })}\n`);
    }
    const watcher: Watcher = { resource, namespace, selector, res };
    this.#watchers.add(watcher);
    res.on('close', () => this.#watchers.delete(watcher));
  }
}

function matches(
  obj: StoredObject,
  namespace: string | undefined,
  selector: [string, string][],
): boolean {
  if (namespace !== undefined && obj.metadata?.namespace !== namespace) return false;
  return selector.every(([field, value]) => fieldOf(obj, field) === value);
}

function status(code: number, reason: string, message: string): unknown {
  return {
    kind: 'Status',
    apiVersion: 'v1',
    status: code < 400 ? 'Success' : 'Failure',
    code,
    reason,
    message,
  };
}

class HttpError extends Error {
  readonly status: number;
  readonly reason: string;

  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}
