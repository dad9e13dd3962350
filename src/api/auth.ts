import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { invalidInput } from '../errors.js';
import type { KubeClient } from '../kube/client.js';
import { LruCache } from './lru-cache.js';

/** Who made a request. */
export interface RequestUser {
  readonly name: string;
  readonly uid?: string;
  readonly groups: readonly string[];
  readonly extra?: Readonly<Record<string, readonly string[]>>;
}

/** What a request does, in the terms of a SubjectAccessReview on the node object. */
export interface RequestAttributes {
  readonly verb: string;
  /** Tried in order; the first one allowed wins (the kubelet's fine-grained authorization). */
  readonly subresources: readonly string[];
}

/** Decides who may call the kubelet API. */
export interface Authorizer {
  /** The user, or undefined when the request carries no valid credentials (401). */
  authenticate(req: IncomingMessage): Promise<RequestUser | undefined>;
  /** Whether `user` may do `attrs` on this node (403 when not). */
  authorize(user: RequestUser, attrs: RequestAttributes): Promise<boolean>;
}

/** The verb a kubelet authorizes for an HTTP method. */
export function verbOf(method: string | undefined): string {
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

/** Lets everyone do everything. Only for development: the CLI warns when it is used. */
export const allowAll: Authorizer = {
  authenticate: () =>
    Promise.resolve({ name: 'system:anonymous', groups: ['system:unauthenticated'] }),
  authorize: () => Promise.resolve(true),
};

export interface WebhookAuthorizerOptions {
  readonly client: KubeClient;
  readonly nodeName: string;
  /** Tokens a review authenticated are cached this long. Default: 120 000 ms (the kubelet's). */
  readonly tokenCacheMs?: number;
  /**
   * At most this many authenticated tokens are cached, least recently used dropped first.
   * Default: 4 096.
   */
  readonly tokenCacheSize?: number;
  /**
   * Tokens a review rejected are cached this long, apart from the authenticated ones, so that
   * made-up tokens neither evict a valid identity nor make a review each. Default: 10 000 ms.
   */
  readonly rejectedTokenCacheMs?: number;
  /** At most this many rejected tokens are cached. Default: 1 024. */
  readonly rejectedTokenCacheSize?: number;
  /** TokenReviews in flight at once. Default: 8. */
  readonly maxReviewsInFlight?: number;
  /**
   * TokenReviews waiting for a slot; past them a request is refused with
   * {@link AuthenticationBusyError} (429) rather than reviewed. Default: 256.
   */
  readonly maxReviewsQueued?: number;
  /** Allowed decisions are cached this long. Default: 300 000 ms. */
  readonly allowCacheMs?: number;
  /** Denied decisions are cached this long. Default: 30 000 ms. */
  readonly denyCacheMs?: number;
}

/**
 * Thrown by {@link Authorizer.authenticate} when the credentials cannot be checked now because
 * too many checks are pending: the server answers 429 with `Retry-After`, not 401, so a client
 * with a valid token tries again instead of taking itself for unauthorized.
 */
export class AuthenticationBusyError extends Error {
  /** When to try again, in seconds. */
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterSeconds = 1) {
    super(message);
    this.name = 'AuthenticationBusyError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

interface TokenReview {
  status?: {
    authenticated?: boolean;
    user?: { username?: string; uid?: string; groups?: string[]; extra?: Record<string, string[]> };
  };
}

interface SubjectAccessReview {
  status?: { allowed?: boolean };
}

/**
 * The kubelet's delegated authentication and authorization: a client certificate verified by
 * the TLS layer against the client CA names the user (CN) and groups (O); a bearer token is
 * checked with a TokenReview; every request is authorized with a SubjectAccessReview on this
 * node. Decisions are cached like the kubelet caches them; authenticated and rejected tokens
 * in caches of their own, both bounded and least-recently-used first out. At most
 * `maxReviewsInFlight` reviews run at once and `maxReviewsQueued` wait; more requests with an
 * uncached token get {@link AuthenticationBusyError} while cached tokens still authenticate.
 */
export class WebhookAuthorizer implements Authorizer {
  readonly #o: WebhookAuthorizerOptions;
  readonly #tokens: LruCache<RequestUser>;
  readonly #rejected: LruCache<true>;
  readonly #inflight = new Map<string, Promise<RequestUser | null>>();
  readonly #slots: Slots;
  readonly #decisions = new LruCache<boolean>({ maxEntries: 4096 });

  constructor(options: WebhookAuthorizerOptions) {
    for (const name of [
      'tokenCacheSize',
      'rejectedTokenCacheSize',
      'maxReviewsInFlight',
    ] as const) {
      const value = options[name];
      if (value !== undefined && !(Number.isInteger(value) && value >= 1))
        throw invalidInput(`${name} must be a positive integer, not ${String(value)}`);
    }
    const queued = options.maxReviewsQueued;
    if (queued !== undefined && !(Number.isInteger(queued) && queued >= 0))
      throw invalidInput(`maxReviewsQueued must be an integer >= 0, not ${String(queued)}`);
    this.#o = options;
    this.#tokens = new LruCache({ maxEntries: options.tokenCacheSize ?? 4096 });
    this.#rejected = new LruCache({ maxEntries: options.rejectedTokenCacheSize ?? 1024 });
    this.#slots = new Slots(options.maxReviewsInFlight ?? 8, options.maxReviewsQueued ?? 256);
  }

  async authenticate(req: IncomingMessage): Promise<RequestUser | undefined> {
    const fromCert = userFromCertificate(req.socket as TLSSocket);
    if (fromCert) return fromCert;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match?.[1]) return undefined;
    const token = match[1];
    // Keyed by a digest: a flood of made-up tokens must not fill memory with the tokens.
    const key = createHash('sha256').update(token).digest('base64');
    const cached = this.#tokens.get(key);
    if (cached) return cached;
    if (this.#rejected.get(key)) return undefined;
    let pending = this.#inflight.get(key);
    if (!pending) {
      pending = this.#review(token, key).finally(() => this.#inflight.delete(key));
      this.#inflight.set(key, pending);
    }
    return (await pending) ?? undefined;
  }

  /** One TokenReview; at most a few at once, so clients cannot flood the API server through us. */
  async #review(token: string, key: string): Promise<RequestUser | null> {
    await this.#slots.acquire();
    let review: TokenReview;
    try {
      review = await this.#o.client.request<TokenReview>(
        'POST',
        '/apis/authentication.k8s.io/v1/tokenreviews',
        {
          body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
          unthrottled: true,
          timeoutMs: 10_000,
        },
      );
    } finally {
      this.#slots.release();
    }
    const u = review.status?.user;
    if (!review.status?.authenticated || !u?.username) {
      this.#rejected.set(key, true, this.#o.rejectedTokenCacheMs ?? 10_000);
      return null;
    }
    const user: RequestUser = {
      name: u.username,
      groups: u.groups ?? [],
      ...(u.uid ? { uid: u.uid } : {}),
      ...(u.extra ? { extra: u.extra } : {}),
    };
    this.#tokens.set(key, user, this.#o.tokenCacheMs ?? 120_000);
    return user;
  }

  async authorize(user: RequestUser, attrs: RequestAttributes): Promise<boolean> {
    for (const subresource of attrs.subresources) {
      const extra = Object.entries(user.extra ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
      const key = JSON.stringify([
        user.name,
        user.uid,
        user.groups,
        extra,
        attrs.verb,
        subresource,
      ]);
      let allowed = this.#decisions.get(key);
      if (allowed === undefined) {
        const review = await this.#o.client.request<SubjectAccessReview>(
          'POST',
          '/apis/authorization.k8s.io/v1/subjectaccessreviews',
          {
            unthrottled: true,
            timeoutMs: 10_000,
            body: {
              apiVersion: 'authorization.k8s.io/v1',
              kind: 'SubjectAccessReview',
              spec: {
                user: user.name,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                resourceAttributes: {
                  group: '',
                  version: 'v1',
                  resource: 'nodes',
                  subresource,
                  name: this.#o.nodeName,
                  verb: attrs.verb,
                },
              },
            },
          },
        );
        allowed = review.status?.allowed === true;
        this.#decisions.set(
          key,
          allowed,
          allowed ? (this.#o.allowCacheMs ?? 300_000) : (this.#o.denyCacheMs ?? 30_000),
        );
      }
      if (allowed) return true;
    }
    return false;
  }
}

/** The identity in a client certificate the TLS layer verified against the client CA. */
export function userFromCertificate(socket: TLSSocket): RequestUser | undefined {
  if (typeof socket.getPeerCertificate !== 'function' || !socket.authorized) return undefined;
  const cert = socket.getPeerCertificate();
  const cn = cert.subject.CN;
  if (!cn) return undefined;
  // Like Go's x509 authenticator: only certificates meant for client authentication.
  const usages = (cert as { ext_key_usage?: string[] }).ext_key_usage;
  if (usages && !usages.includes('1.3.6.1.5.5.7.3.2')) return undefined;
  const o = cert.subject.O;
  const groups = o === undefined ? [] : Array.isArray(o) ? o : [o];
  return { name: Array.isArray(cn) ? (cn[0] ?? '') : cn, groups };
}

/** A counting semaphore with a bounded queue: past it, {@link AuthenticationBusyError}. */
class Slots {
  readonly #max: number;
  readonly #maxQueued: number;
  #used = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(max: number, maxQueued: number) {
    this.#max = max;
    this.#maxQueued = maxQueued;
  }

  async acquire(): Promise<void> {
    if (this.#used < this.#max) {
      this.#used++;
      return;
    }
    if (this.#waiting.length >= this.#maxQueued)
      throw new AuthenticationBusyError('too many authentication requests pending');
    // The releaser hands its slot over: nobody arriving meanwhile can take it.
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#used--;
  }
}
