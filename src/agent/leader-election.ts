/**
 * Leader election on a `coordination.k8s.io` Lease, with client-go's rules: a replica takes the
 * Lease when it does not exist, when it was released (no holder), or when its record has not
 * changed for the record's own `leaseDurationSeconds` as this replica's clock measures it (the
 * observed time, so the clocks of the replicas need not agree); the leader renews it every retry
 * period and stops leading when it could not renew it within the renew deadline, which is shorter
 * than the lease duration, so it has stopped before anyone may take over. `leaseTransitions`
 * counts the changes of holder; `acquireTime` is when the holder took it.
 *
 * The decision is the pure function {@link decide}; {@link LeaderElector} does the I/O.
 */
import type { V1Lease } from '../wire.js';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import { aborted, sleep } from '../abort.js';
import { errorCode, errorMessage, invalidInput, permanent } from '../errors.js';
import { ApiError, type KubeClient } from '../kube/client.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatMicroTime } from '../kubelet/time.js';

/** The fields of a Lease that leader election reads and writes. */
export interface LeaseRecord {
  /** '' when no one holds it (released). */
  readonly holderIdentity: string;
  readonly leaseDurationSeconds: number;
  /** Milliseconds since the epoch; undefined when the Lease has none. */
  readonly acquireTimeMs: number | undefined;
  readonly renewTimeMs: number | undefined;
  readonly leaseTransitions: number;
}

/** A record as this replica last saw it change, and when (by its own clock). */
export interface Observation {
  readonly record: LeaseRecord;
  readonly atMs: number;
}

/** What {@link decide} tells the elector to do. */
export type Decision =
  /** No Lease: create it with `record`. */
  | { readonly action: 'create'; readonly record: LeaseRecord; readonly observed: Observation }
  /** Another replica holds it and its lease has not expired: try again after the retry period. */
  | { readonly action: 'wait'; readonly observed: Observation }
  /** Write `record` (a renewal when `renew`, else a takeover). */
  | {
      readonly action: 'update';
      readonly record: LeaseRecord;
      readonly renew: boolean;
      readonly observed: Observation;
    };

const sameRecord = (a: LeaseRecord, b: LeaseRecord): boolean =>
  a.holderIdentity === b.holderIdentity &&
  a.leaseDurationSeconds === b.leaseDurationSeconds &&
  a.acquireTimeMs === b.acquireTimeMs &&
  a.renewTimeMs === b.renewTimeMs &&
  a.leaseTransitions === b.leaseTransitions;

/**
 * One step of acquire-or-renew, as client-go takes it. `current` is the Lease as just read
 * (undefined: there is none), `observed` what this replica saw before. A record that changed is
 * observed now; a record held by another identity is valid until its observation plus its own
 * `leaseDurationSeconds`. A renewal keeps `acquireTime` and `leaseTransitions`; a takeover counts
 * one more transition.
 */
export function decide(input: {
  readonly identity: string;
  readonly nowMs: number;
  readonly leaseDurationSeconds: number;
  readonly current: LeaseRecord | undefined;
  readonly observed: Observation | undefined;
}): Decision {
  const { identity, nowMs, current } = input;
  const mine = (acquireTimeMs: number, leaseTransitions: number): LeaseRecord => ({
    holderIdentity: identity,
    leaseDurationSeconds: input.leaseDurationSeconds,
    acquireTimeMs,
    renewTimeMs: nowMs,
    leaseTransitions,
  });
  if (!current) {
    const record = mine(nowMs, 0);
    return { action: 'create', record, observed: { record, atMs: nowMs } };
  }
  const observed =
    input.observed && sameRecord(input.observed.record, current)
      ? input.observed
      : { record: current, atMs: nowMs };
  const leader = current.holderIdentity === identity;
  const valid = observed.atMs + current.leaseDurationSeconds * 1000 > nowMs;
  if (current.holderIdentity !== '' && valid && !leader) return { action: 'wait', observed };
  const record = leader
    ? mine(current.acquireTimeMs ?? nowMs, current.leaseTransitions)
    : mine(nowMs, current.leaseTransitions + 1);
  return { action: 'update', record, renew: leader, observed };
}

/** The record a leader writes when it gives the Lease up: no holder, one second long. */
export function releasedRecord(current: LeaseRecord, nowMs: number): LeaseRecord {
  return {
    holderIdentity: '',
    leaseDurationSeconds: 1,
    acquireTimeMs: nowMs,
    renewTimeMs: nowMs,
    leaseTransitions: current.leaseTransitions,
  };
}

/** The record of a Lease (absent fields as a released, never-renewed Lease has them). */
export function recordOf(lease: V1Lease): LeaseRecord {
  const s = lease.spec ?? {};
  const time = (t: string | undefined): number | undefined => {
    const ms = t === undefined ? NaN : Date.parse(t);
    return Number.isNaN(ms) ? undefined : ms;
  };
  return {
    holderIdentity: s.holderIdentity ?? '',
    leaseDurationSeconds: s.leaseDurationSeconds ?? 0,
    acquireTimeMs: time(s.acquireTime),
    renewTimeMs: time(s.renewTime),
    leaseTransitions: s.leaseTransitions ?? 0,
  };
}

/** The Lease `lease` with `record` written into its spec; everything else is kept. */
export function withRecord(lease: V1Lease, record: LeaseRecord): V1Lease {
  const time = (ms: number | undefined): string | undefined =>
    ms === undefined ? undefined : formatMicroTime(ms);
  return {
    ...lease,
    spec: {
      ...lease.spec,
      holderIdentity: record.holderIdentity,
      leaseDurationSeconds: record.leaseDurationSeconds,
      acquireTime: time(record.acquireTimeMs),
      renewTime: time(record.renewTimeMs),
      leaseTransitions: record.leaseTransitions,
    },
  };
}

/**
 * Where the election record lives. `update` must fail with code `Conflict` when the Lease changed
 * since `previous` was read (optimistic concurrency on its resourceVersion).
 */
export interface LeaseLock {
  /** Names the Lease in logs and errors (`namespace/name`). */
  readonly description: string;
  get(signal: AbortSignal): Promise<V1Lease | undefined>;
  create(record: LeaseRecord, signal: AbortSignal): Promise<V1Lease>;
  update(previous: V1Lease, record: LeaseRecord, signal: AbortSignal): Promise<V1Lease>;
}

/** The Lease `namespace/name` of the API server `client` talks to. */
export class KubeLeaseLock implements LeaseLock {
  readonly description: string;
  readonly #client: KubeClient;
  readonly #base: string;
  readonly #name: string;
  readonly #namespace: string;

  constructor(client: KubeClient, namespace: string, name: string) {
    this.#client = client;
    this.#namespace = namespace;
    this.#name = name;
    this.#base = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
    this.description = `${namespace}/${name}`;
  }

  get(signal: AbortSignal): Promise<V1Lease | undefined> {
    // Unthrottled, as the node's own Lease is: a busy client must not cost the leadership.
    return this.#client.get<V1Lease>(`${this.#base}/${this.#name}`, signal, true);
  }

  create(record: LeaseRecord, signal: AbortSignal): Promise<V1Lease> {
    const lease = withRecord(
      {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.#name, namespace: this.#namespace },
      },
      record,
    );
    return this.#client.create<V1Lease>(this.#base, lease, signal, true);
  }

  update(previous: V1Lease, record: LeaseRecord, signal: AbortSignal): Promise<V1Lease> {
    // A PUT carries the resourceVersion read: a Lease changed since answers 409 Conflict.
    return this.#client.replace<V1Lease>(
      `${this.#base}/${this.#name}`,
      withRecord(previous, record),
      signal,
      true,
    );
  }
}

export interface LeaderElectorOptions {
  readonly lock: LeaseLock;
  /** Who this replica is, written as `holderIdentity`. Default: {@link defaultIdentity}. */
  readonly identity?: string;
  /**
   * How long a standby waits, from the last change of the record it saw, before it takes the
   * Lease; written (in whole seconds) as `leaseDurationSeconds`. Default: 15 000.
   */
  readonly leaseDurationMs?: number;
  /** How long the leader tries to renew before it stops leading. Default: 10 000. */
  readonly renewDeadlineMs?: number;
  /** Between two attempts to acquire (with up to 1.2 times as much jitter) or renew. Default: 2 000. */
  readonly retryPeriodMs?: number;
  readonly logger?: Logger;
  /** Milliseconds since the epoch. Default: `Date.now`. */
  readonly clock?: () => number;
  /** A number in [0, 1) for the acquire jitter. Default: `Math.random`. */
  readonly random?: () => number;
}

/** How a term of leadership ended. */
export type TermEnd = 'stopped' | 'lost';

/** client-go's jitter factor: an acquire attempt waits retryPeriod * (1 + up to 1.2). */
const JITTER_FACTOR = 1.2;

/** `<host name>_<random UUID>`, as client-go's users make it: unique per process. */
export function defaultIdentity(): string {
  return `${hostname()}_${randomUUID()}`;
}

/**
 * Acquires a Lease, keeps it renewed while it leads, and gives it up on a clean stop. Whatever
 * the leader does runs in `lead(signal)`, whose signal aborts when the leadership ends; the Lease
 * is released only once `lead` has settled, so no two replicas ever lead at once as far as the
 * Lease can tell.
 */
export class LeaderElector {
  readonly identity: string;
  readonly #lock: LeaseLock;
  readonly #leaseMs: number;
  readonly #renewDeadlineMs: number;
  readonly #retryMs: number;
  readonly #log: Logger;
  readonly #clock: () => number;
  readonly #random: () => number;
  #observed: Observation | undefined;
  #lease: V1Lease | undefined;
  #reported: string | undefined;
  #leading = false;

  /** Throws `InvalidInput` unless lease duration > renew deadline > 1.2 x retry period > 0. */
  constructor(options: LeaderElectorOptions) {
    this.#leaseMs = options.leaseDurationMs ?? 15_000;
    this.#renewDeadlineMs = options.renewDeadlineMs ?? 10_000;
    this.#retryMs = options.retryPeriodMs ?? 2_000;
    checkTimings(this.#leaseMs, this.#renewDeadlineMs, this.#retryMs);
    this.identity = options.identity ?? defaultIdentity();
    if (this.identity === '') throw invalidInput('leader election: the identity must not be empty');
    this.#lock = options.lock;
    this.#log = (options.logger ?? silentLogger).child({ lease: options.lock.description });
    this.#clock = options.clock ?? Date.now;
    this.#random = options.random ?? Math.random;
  }

  /** Whether this replica holds the Lease now. */
  get isLeader(): boolean {
    return this.#leading;
  }

  /** The holder last seen ('' for none), or undefined before the first read. */
  get leader(): string | undefined {
    return this.#observed?.record.holderIdentity;
  }

  /**
   * Leads whenever this replica holds the Lease: one {@link runTerm} after another, standing by
   * again after a lost Lease, until `signal` aborts. Rejects as a term does.
   */
  async run(signal: AbortSignal, lead: (signal: AbortSignal) => Promise<void>): Promise<void> {
    while (!signal.aborted) {
      if ((await this.runTerm(signal, lead)) === 'stopped') return;
      this.#log.info({ identity: this.identity }, 'standing by again');
    }
  }

  /**
   * One term: waits to acquire the Lease, then runs `lead` while renewing it. Resolves `'stopped'` when
   * `signal` aborts (after `lead` has settled and the Lease was released), `'lost'` when a renewal
   * did not succeed within the renew deadline (after `lead` has settled; the Lease is not
   * written). `lead` settling by itself ends the term as `signal` would; when it rejects, so
   * does `run`, with its error. Rejects with code `Permanent` when the identity may not write
   * the Lease (HTTP 403).
   */
  async runTerm(
    signal: AbortSignal,
    lead: (signal: AbortSignal) => Promise<void>,
  ): Promise<TermEnd> {
    this.#log.info({ identity: this.identity }, 'waiting to acquire the lease');
    while (!(await this.#attempt(signal))) {
      if (aborted(signal)) return 'stopped';
      await sleep(this.#retryMs * (1 + this.#random() * JITTER_FACTOR), signal);
      if (aborted(signal)) return 'stopped';
    }
    if (aborted(signal)) {
      await this.#release();
      return 'stopped';
    }
    this.#leading = true;
    const transitions = this.#observed?.record.leaseTransitions ?? 0;
    this.#log.info(
      { identity: this.identity, leaseTransitions: transitions },
      'acquired the lease',
    );
    const term = new AbortController();
    const stop = (): void => {
      term.abort();
    };
    signal.addEventListener('abort', stop, { once: true });
    let failure: { readonly reason: unknown } | undefined;
    const work = (async () => {
      try {
        await lead(term.signal);
      } catch (err) {
        failure = { reason: err };
      } finally {
        // A leader that stops by itself ends the term.
        term.abort();
      }
    })();
    let end: TermEnd;
    try {
      end = await this.#renewLoop(term.signal);
    } finally {
      signal.removeEventListener('abort', stop);
      term.abort();
      await work;
      this.#leading = false;
    }
    if (end === 'lost')
      this.#log.warn({ identity: this.identity }, 'lost the lease: stopped leading');
    else {
      await this.#release();
      this.#log.info({ identity: this.identity }, 'stopped leading and released the lease');
    }
    if (failure) throw failure.reason;
    return end;
  }

  /** Renews every retry period until `signal` aborts ('stopped') or a renewal is late ('lost'). */
  async #renewLoop(signal: AbortSignal): Promise<TermEnd> {
    while (!signal.aborted) {
      await sleep(this.#retryMs, signal);
      if (aborted(signal)) return 'stopped';
      const deadline = AbortSignal.timeout(this.#renewDeadlineMs);
      const within = AbortSignal.any([signal, deadline]);
      let renewed = false;
      while (!renewed && !within.aborted) {
        renewed = await this.#attempt(within);
        if (!renewed) await sleep(this.#retryMs, within);
      }
      if (aborted(signal)) return 'stopped';
      if (!renewed) return 'lost';
    }
    return 'stopped';
  }

  /** One acquire-or-renew; whether this replica holds the Lease after it. */
  async #attempt(signal: AbortSignal): Promise<boolean> {
    try {
      const current = await this.#lock.get(signal);
      const decision = decide({
        identity: this.identity,
        nowMs: this.#clock(),
        leaseDurationSeconds: Math.floor(this.#leaseMs / 1000),
        current: current ? recordOf(current) : undefined,
        observed: this.#observed,
      });
      this.#observe(decision.observed);
      if (decision.action === 'wait') return false;
      const written =
        decision.action === 'create' || !current
          ? await this.#lock.create(decision.record, signal)
          : await this.#lock.update(current, decision.record, signal);
      this.#lease = written;
      this.#observe({ record: decision.record, atMs: this.#clock() });
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.status === 403)
        throw permanent(
          `leader election: this identity may not write the Lease ${this.#lock.description}: ${errorMessage(err)}`,
          err,
        );
      if (!aborted(signal) && errorCode(err) !== 'Conflict' && errorCode(err) !== 'AlreadyExists')
        this.#log.warn({ err: errorMessage(err) }, 'could not read or write the lease');
      return false;
    }
  }

  #observe(observation: Observation): void {
    this.#observed = observation;
    const holder = observation.record.holderIdentity;
    if (holder === this.#reported) return;
    this.#reported = holder;
    if (holder !== '' && holder !== this.identity)
      this.#log.info({ identity: this.identity, leader: holder }, 'another replica leads');
  }

  /** Gives the Lease up (no holder, one second long), so a standby takes it at once. */
  async #release(): Promise<void> {
    const signal = AbortSignal.timeout(this.#renewDeadlineMs);
    for (;;) {
      try {
        const current = (await this.#lock.get(signal)) ?? this.#lease;
        if (!current || recordOf(current).holderIdentity !== this.identity) return;
        const record = releasedRecord(recordOf(current), this.#clock());
        this.#lease = await this.#lock.update(current, record, signal);
        this.#observe({ record, atMs: this.#clock() });
        return;
      } catch (err) {
        if (errorCode(err) === 'Conflict' && !signal.aborted) continue;
        this.#log.warn({ err: errorMessage(err) }, 'could not release the lease');
        return;
      }
    }
  }
}

/** What {@link checkTimings} calls the three durations in its errors. */
export interface TimingNames {
  readonly lease: string;
  readonly renew: string;
  readonly retry: string;
}

/**
 * client-go's checks of the three durations: lease duration (at least 1 s) > renew deadline >
 * 1.2 x retry period > 0. Throws `InvalidInput` naming them as `names` says.
 */
export function checkTimings(
  leaseMs: number,
  renewDeadlineMs: number,
  retryMs: number,
  names: TimingNames = {
    lease: 'leaseDurationMs',
    renew: 'renewDeadlineMs',
    retry: 'retryPeriodMs',
  },
): void {
  const ms = (n: number): string => `${String(n)} ms`;
  if (!(retryMs > 0))
    throw invalidInput(`leader election: ${names.retry} must be above 0, got ${ms(retryMs)}`);
  if (!(leaseMs >= 1000))
    throw invalidInput(`leader election: ${names.lease} must be at least 1 s, got ${ms(leaseMs)}`);
  if (!(leaseMs > renewDeadlineMs))
    throw invalidInput(
      `leader election: ${names.lease} (${ms(leaseMs)}) must be longer than ${names.renew} (${ms(renewDeadlineMs)})`,
    );
  if (!(renewDeadlineMs > JITTER_FACTOR * retryMs))
    throw invalidInput(
      `leader election: ${names.renew} (${ms(renewDeadlineMs)}) must be longer than 1.2 times ${names.retry} (${ms(retryMs)})`,
    );
}
