import type { V1Lease } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { abortOf } from '../../../src/abort.js';
import {
  checkTimings,
  decide,
  KubeLeaseLock,
  LeaderElector,
  recordOf,
  releasedRecord,
  withRecord,
  type LeaseLock,
  type LeaseRecord,
} from '../../../src/agent/leader-election.js';
import { conflict, errorCode, unavailable } from '../../../src/errors.js';
import { ApiError } from '../../../src/kube/client.js';
import { localApi } from '../../helpers/local-api.js';
import { waitFor } from '../../helpers/wait.js';

const held = (holder: string, renewTimeMs: number, transitions = 0): LeaseRecord => ({
  holderIdentity: holder,
  leaseDurationSeconds: 15,
  acquireTimeMs: 1_000,
  renewTimeMs,
  leaseTransitions: transitions,
});

test('no Lease: create one held by this identity, acquired and renewed now, no transition', () => {
  const d = decide({
    identity: 'a',
    nowMs: 5_000,
    leaseDurationSeconds: 15,
    current: undefined,
    observed: undefined,
  });
  assert.equal(d.action, 'create');
  assert.deepEqual(d.action === 'create' && d.record, {
    holderIdentity: 'a',
    leaseDurationSeconds: 15,
    acquireTimeMs: 5_000,
    renewTimeMs: 5_000,
    leaseTransitions: 0,
  });
});

test('a Lease held by another waits until its duration has passed since this replica saw it change', () => {
  const current = held('b', 10_000, 3);
  // First seen at 20 000 (the holder's clock says 10 000: clocks need not agree).
  const first = decide({
    identity: 'a',
    nowMs: 20_000,
    leaseDurationSeconds: 15,
    current,
    observed: undefined,
  });
  assert.equal(first.action, 'wait');
  assert.equal(first.observed.atMs, 20_000);
  // Unchanged 14.9 s later: still valid.
  const later = decide({
    identity: 'a',
    nowMs: 34_900,
    leaseDurationSeconds: 15,
    current,
    observed: first.observed,
  });
  assert.equal(later.action, 'wait');
  assert.equal(later.observed.atMs, 20_000, 'an unchanged record keeps its observed time');
  // A renewal restarts the count.
  const renewed = decide({
    identity: 'a',
    nowMs: 34_900,
    leaseDurationSeconds: 15,
    current: held('b', 12_000, 3),
    observed: later.observed,
  });
  assert.equal(renewed.action, 'wait');
  assert.equal(renewed.observed.atMs, 34_900);
});

test('an expired Lease is taken over: acquired now, one more transition', () => {
  const current = held('b', 10_000, 3);
  const observed = { record: current, atMs: 20_000 };
  const d = decide({ identity: 'a', nowMs: 35_000, leaseDurationSeconds: 15, current, observed });
  assert.equal(d.action, 'update');
  assert.ok(d.action === 'update');
  assert.equal(d.renew, false);
  assert.deepEqual(d.record, {
    holderIdentity: 'a',
    leaseDurationSeconds: 15,
    acquireTimeMs: 35_000,
    renewTimeMs: 35_000,
    leaseTransitions: 4,
  });
});

test("the expiry uses the record's own duration, not this replica's", () => {
  const current = { ...held('b', 10_000), leaseDurationSeconds: 40 };
  const observed = { record: current, atMs: 0 };
  const wait = decide({
    identity: 'a',
    nowMs: 39_000,
    leaseDurationSeconds: 15,
    current,
    observed,
  });
  assert.equal(wait.action, 'wait');
  const take = decide({
    identity: 'a',
    nowMs: 40_000,
    leaseDurationSeconds: 15,
    current,
    observed,
  });
  assert.equal(take.action, 'update');
});

test('the holder renews: acquire time and transitions kept, renew time now', () => {
  const current = held('a', 10_000, 2);
  const d = decide({
    identity: 'a',
    nowMs: 12_000,
    leaseDurationSeconds: 15,
    current,
    observed: { record: current, atMs: 10_000 },
  });
  assert.ok(d.action === 'update');
  assert.equal(d.renew, true);
  assert.equal(d.record.acquireTimeMs, 1_000);
  assert.equal(d.record.renewTimeMs, 12_000);
  assert.equal(d.record.leaseTransitions, 2);
});

test('a released Lease (no holder) is taken at once', () => {
  const released = releasedRecord(held('b', 10_000, 5), 11_000);
  assert.equal(released.holderIdentity, '');
  assert.equal(released.leaseDurationSeconds, 1);
  assert.equal(released.leaseTransitions, 5);
  const d = decide({
    identity: 'a',
    nowMs: 11_001,
    leaseDurationSeconds: 15,
    current: released,
    observed: undefined,
  });
  assert.ok(d.action === 'update');
  assert.equal(d.record.leaseTransitions, 6);
});

test('Lease objects: the record is read and written through spec, everything else kept', () => {
  const lease: V1Lease = {
    metadata: { name: 'n', namespace: 'kube-node-lease', resourceVersion: '7', labels: { x: 'y' } },
    spec: {
      holderIdentity: 'b',
      leaseDurationSeconds: 40,
      renewTime: '2026-01-02T03:04:05.123456Z',
    },
  };
  const r = recordOf(lease);
  assert.equal(r.holderIdentity, 'b');
  assert.equal(r.renewTimeMs, Date.parse('2026-01-02T03:04:05.123Z'));
  assert.equal(r.acquireTimeMs, undefined);
  assert.equal(r.leaseTransitions, 0);
  const next = withRecord(lease, held('a', Date.parse('2026-01-02T03:04:06Z'), 1));
  assert.equal(next.metadata?.resourceVersion, '7');
  assert.deepEqual(next.metadata?.labels, { x: 'y' });
  assert.equal(next.spec?.holderIdentity, 'a');
  assert.equal(next.spec?.renewTime, '2026-01-02T03:04:06.000000Z');
  assert.equal(next.spec?.leaseTransitions, 1);
});

test("client-go's rules for the three durations", () => {
  checkTimings(15_000, 10_000, 2_000);
  for (const [lease, renew, retry, what] of [
    [10_000, 10_000, 2_000, /leaseDurationMs \(10000 ms\) must be longer than renewDeadlineMs/],
    [
      15_000,
      2_400,
      2_000,
      /renewDeadlineMs \(2400 ms\) must be longer than 1\.2 times retryPeriodMs/,
    ],
    [15_000, 10_000, 0, /retryPeriodMs must be above 0/],
    [500, 400, 100, /leaseDurationMs must be at least 1 s/],
  ] as const) {
    assert.throws(
      () => {
        checkTimings(lease, renew, retry);
      },
      (err: unknown) => errorCode(err) === 'InvalidInput' && what.test(String(err)),
    );
  }
});

/** A Lease in memory with the API server's optimistic concurrency; `down` makes it unreachable. */
class MemoryLock implements LeaseLock {
  readonly description = 'test/lock';
  lease: V1Lease | undefined;
  down = false;
  forbidden = false;
  #version = 0;

  get(): Promise<V1Lease | undefined> {
    this.#check();
    return Promise.resolve(this.lease && structuredClone(this.lease));
  }

  create(record: LeaseRecord): Promise<V1Lease> {
    this.#check();
    if (this.lease) return Promise.reject(conflict('exists'));
    this.lease = withRecord({ metadata: { resourceVersion: String(++this.#version) } }, record);
    return Promise.resolve(structuredClone(this.lease));
  }

  update(previous: V1Lease, record: LeaseRecord): Promise<V1Lease> {
    this.#check();
    if (previous.metadata?.resourceVersion !== this.lease?.metadata?.resourceVersion)
      return Promise.reject(conflict('changed'));
    this.lease = withRecord(
      { ...previous, metadata: { resourceVersion: String(++this.#version) } },
      record,
    );
    return Promise.resolve(structuredClone(this.lease));
  }

  get holder(): string | undefined {
    return this.lease?.spec?.holderIdentity;
  }

  #check(): void {
    if (this.forbidden) throw new ApiError(403, 'leases is forbidden');
    if (this.down) throw unavailable('the API server is down');
  }
}

const fast = { leaseDurationMs: 1_000, renewDeadlineMs: 400, retryPeriodMs: 50 };

/** A `lead` that runs until its signal aborts and records that it ran. */
function leader(log: string[], name: string) {
  return async (signal: AbortSignal): Promise<void> => {
    log.push(`${name} start`);
    await abortOf(signal);
    log.push(`${name} stop`);
  };
}

test('two electors: one leads; a clean stop releases the Lease and the other takes it at once', async () => {
  const lock = new MemoryLock();
  const log: string[] = [];
  const a = new LeaderElector({ lock, identity: 'a', ...fast });
  const b = new LeaderElector({ lock, identity: 'b', ...fast });
  const stopA = new AbortController();
  const stopB = new AbortController();
  const runA = a.runTerm(stopA.signal, leader(log, 'a'));
  await waitFor(() => a.isLeader, { what: 'a to lead' });
  const runB = b.runTerm(stopB.signal, leader(log, 'b'));
  await waitFor(() => b.leader === 'a', { what: 'b to see a lead' });
  assert.equal(b.isLeader, false);
  stopA.abort();
  assert.equal(await runA, 'stopped');
  await waitFor(() => b.isLeader, { what: 'b to lead' });
  assert.deepEqual(log, ['a start', 'a stop', 'b start'], 'a stopped before b started');
  assert.equal(lock.lease?.spec?.leaseTransitions, 1);
  stopB.abort();
  assert.equal(await runB, 'stopped');
  assert.equal(lock.holder, '', 'released on a clean stop');
});

test('a leader that stops renewing (killed) is replaced only after the lease duration', async () => {
  const lock = new MemoryLock();
  const log: string[] = [];
  const a = new LeaderElector({ lock, identity: 'a', ...fast });
  const stopA = new AbortController();
  const runA = a.runTerm(stopA.signal, leader(log, 'a'));
  await waitFor(() => a.isLeader, { what: 'a to lead' });
  // `a` vanishes without releasing: its record stays as written last.
  const frozen = structuredClone(lock.lease);
  const realUpdate = lock.update.bind(lock);
  lock.update = () => Promise.reject(unavailable('a is gone'));
  lock.create = () => Promise.reject(unavailable('a is gone'));
  await waitFor(() => log.includes('a stop'), { what: 'a to stop leading' });
  assert.equal(await runA, 'lost', 'a leader that cannot renew stops, as lost');
  lock.update = realUpdate;
  lock.lease = frozen;
  const b = new LeaderElector({ lock, identity: 'b', ...fast });
  const stopB = new AbortController();
  const started = Date.now();
  const runB = b.runTerm(stopB.signal, leader(log, 'b'));
  await waitFor(() => b.isLeader, { what: 'b to take over' });
  assert.ok(Date.now() - started >= fast.leaseDurationMs, 'not before the lease expired');
  assert.equal(lock.lease?.spec?.leaseTransitions, 1);
  assert.equal(lock.holder, 'b');
  stopB.abort();
  await runB;
});

test('a leader that cannot reach the API within the renew deadline stops leading, and leads again later', async () => {
  const lock = new MemoryLock();
  const log: string[] = [];
  const a = new LeaderElector({ lock, identity: 'a', ...fast });
  const stop = new AbortController();
  const first = a.runTerm(stop.signal, leader(log, 'a'));
  await waitFor(() => a.isLeader, { what: 'a to lead' });
  lock.down = true;
  assert.equal(await first, 'lost');
  assert.deepEqual(log, ['a start', 'a stop']);
  assert.equal(a.isLeader, false);
  lock.down = false;
  // The record still names `a`: it renews it at once.
  const second = a.runTerm(stop.signal, leader(log, 'a'));
  await waitFor(() => a.isLeader, { what: 'a to lead again' });
  assert.equal(lock.lease?.spec?.leaseTransitions, 0, 'the same holder: no transition');
  stop.abort();
  assert.equal(await second, 'stopped');
});

test('a failing leader releases the Lease and its error is rethrown', async () => {
  const lock = new MemoryLock();
  const a = new LeaderElector({ lock, identity: 'a', ...fast });
  await assert.rejects(
    a.runTerm(new AbortController().signal, () => Promise.reject(new Error('port taken'))),
    /port taken/,
  );
  assert.equal(lock.holder, '');
});

test('an identity the API server forbids to write the Lease is a Permanent error', async () => {
  const lock = new MemoryLock();
  lock.forbidden = true;
  const a = new LeaderElector({ lock, identity: 'a', ...fast });
  await assert.rejects(
    a.runTerm(new AbortController().signal, () => Promise.resolve()),
    (err: unknown) =>
      errorCode(err) === 'Permanent' && /may not write the Lease test\/lock/.test(String(err)),
  );
});

test('run: after a lost Lease the replica stands by again and leads once it can', async () => {
  const lock = new MemoryLock();
  const log: string[] = [];
  const a = new LeaderElector({ lock, identity: 'a', ...fast });
  const stop = new AbortController();
  const running = a.run(stop.signal, leader(log, 'a'));
  await waitFor(() => a.isLeader, { what: 'a to lead' });
  lock.down = true;
  await waitFor(() => log.includes('a stop'), { what: 'a to stop leading' });
  lock.down = false;
  await waitFor(() => a.isLeader, { what: 'a to lead again' });
  assert.deepEqual(log, ['a start', 'a stop', 'a start']);
  stop.abort();
  await running;
  assert.deepEqual(log, ['a start', 'a stop', 'a start', 'a stop']);
  assert.equal(lock.holder, '');
});

test('KubeLeaseLock: reads, creates and replaces the Lease with its resourceVersion; a stale write is a Conflict', async (t) => {
  const seen: string[] = [];
  let stored: V1Lease | undefined;
  const { client } = await localApi(t, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      seen.push(`${req.method ?? ''} ${req.url ?? ''}`);
      const reply = (status: number, value: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(value));
      };
      const lease = body ? (JSON.parse(body) as V1Lease) : undefined;
      if (req.method === 'GET') {
        if (stored) reply(200, stored);
        else reply(404, { kind: 'Status', reason: 'NotFound' });
      } else if (
        req.method === 'PUT' &&
        lease?.metadata?.resourceVersion !== stored?.metadata?.resourceVersion
      ) {
        reply(409, { kind: 'Status', reason: 'Conflict', message: 'the object has been modified' });
      } else {
        const version = String(Number(stored?.metadata?.resourceVersion ?? '0') + 1);
        stored = { ...lease, metadata: { ...lease?.metadata, resourceVersion: version } };
        reply(req.method === 'POST' ? 201 : 200, stored);
      }
    });
  });
  const lock = new KubeLeaseLock(client, 'kube-node-lease', 'vk-1');
  const signal = new AbortController().signal;
  assert.equal(lock.description, 'kube-node-lease/vk-1');
  assert.equal(await lock.get(signal), undefined);
  const created = await lock.create(held('a', 2_000), signal);
  assert.equal(created.metadata?.name, 'vk-1');
  assert.equal(created.spec?.holderIdentity, 'a');
  const renewed = await lock.update(created, held('a', 4_000), signal);
  assert.equal(recordOf(renewed).renewTimeMs, 4_000);
  await assert.rejects(
    lock.update(created, held('b', 5_000), signal),
    (err: unknown) => errorCode(err) === 'Conflict',
  );
  assert.deepEqual(seen, [
    'GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vk-1',
    'POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases',
    'PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vk-1',
    'PUT /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/vk-1',
  ]);
});
