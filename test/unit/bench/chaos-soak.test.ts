import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  growth,
  SOAK_ENV,
  soakSettings,
  soakTimeoutSeconds,
  stuckReason,
  warmupMs,
  socketsTo,
  type Sample,
} from '../../../bench/chaos/soak.js';

const MIB = 2 ** 20;
const samples = (rssMib: readonly number[], fds: readonly number[]): Sample[] =>
  rssMib.map((r, i) => ({
    atMs: i * 5000,
    rssBytes: r * MIB,
    fds: fds[i] ?? 0,
    apiConnections: i,
  }));

describe('chaos soak: growth', () => {
  test('each end is the median of three samples, so one GC swing is not a trend', () => {
    const g = growth(
      samples([100, 140, 100, 105, 90, 110, 110, 200, 110], [30, 30, 31, 40, 31, 33, 32, 33, 99]),
    );
    assert.ok(g);
    assert.equal(g.samples, 9);
    assert.equal(g.rssStartBytes, 100 * MIB);
    assert.equal(g.rssEndBytes, 110 * MIB);
    assert.equal(g.rssMaxBytes, 200 * MIB);
    assert.equal(g.rssGrowthPercent, 10);
    assert.equal(g.fdStart, 30);
    assert.equal(g.fdEnd, 33);
    assert.equal(g.fdGrowth, 3);
  });

  test('shrinking is negative growth; few samples use smaller windows; one is not enough', () => {
    assert.equal(growth(samples([200, 150], [10, 8]))?.rssGrowthPercent, -25);
    assert.equal(growth(samples([200, 150], [10, 8]))?.fdGrowth, -2);
    assert.equal(growth(samples([100, 100, 120, 130], [1, 1, 1, 1]))?.rssEndBytes, 125 * MIB);
    assert.equal(growth(samples([100], [1])), undefined);
    assert.equal(growth([]), undefined);
  });
});

describe('chaos soak: connections to the API server', () => {
  test('are the sockets whose remote port is the API server port, by inode', () => {
    const table = [
      '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
      '   0: 00000000:A7A1 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0',
      '   1: 0100007F:E232 0100007F:B1AB 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1',
      '   2: 0100007F:E240 0100007F:B1AB 01 00000000:00000000 00:00000000 00000000     0        0 333 1 0 20 4 30 10 -1',
      '   3: 0100007F:B1AB 0100007F:E250 01 00000000:00000000 00:00000000 00000000     0        0 444 1 0 20 4 30 10 -1',
      '   4: 0100007F:E260 0100007F:B1AB 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0',
      '',
    ].join('\n');
    assert.deepEqual([...socketsTo(table, 0xb1ab)], ['222', '333']);
  });
});

describe('chaos soak: stuck pods', () => {
  const limit = 60_000;
  test('a pod Running and gone in time is not stuck', () => {
    assert.equal(
      stuckReason(
        { name: 'p', createdAtMs: 0, runningAtMs: 2000, deletedAtMs: 9000, goneAtMs: 12_000 },
        500_000,
        limit,
      ),
      undefined,
    );
    // Still on its way, within the limits.
    assert.equal(stuckReason({ name: 'p', createdAtMs: 0 }, 59_000, limit), undefined);
    assert.equal(
      stuckReason(
        { name: 'p', createdAtMs: 0, runningAtMs: 1000, deletedAtMs: 10_000 },
        69_000,
        limit,
      ),
      undefined,
    );
  });

  test('not Running within the limit, whether it got there late or never', () => {
    assert.match(
      stuckReason({ name: 'p', createdAtMs: 0 }, 60_001, limit) ?? '',
      /not Running within 60 s/,
    );
    assert.match(
      stuckReason(
        { name: 'p', createdAtMs: 0, runningAtMs: 61_000, deletedAtMs: 70_000, goneAtMs: 71_000 },
        80_000,
        limit,
      ) ?? '',
      /not Running/,
    );
  });

  test('not gone within the limit of its delete, whether it went late or never', () => {
    const running = { name: 'p', createdAtMs: 0, runningAtMs: 1000, deletedAtMs: 10_000 };
    assert.match(stuckReason(running, 70_001, limit) ?? '', /not gone within 60 s of its delete/);
    assert.match(stuckReason({ ...running, goneAtMs: 75_000 }, 80_000, limit) ?? '', /not gone/);
    assert.equal(stuckReason({ ...running, goneAtMs: 69_000 }, 80_000, limit), undefined);
  });
});

describe('chaos soak: settings', () => {
  test('2 hours at 10 pods/s on both providers; --short churns a minute', () => {
    assert.deepEqual(soakSettings({}, false), {
      seconds: 7200,
      ratePerSecond: 10,
      providers: ['mock', 'process'],
    });
    assert.equal(soakSettings({}, true).seconds, 60);
  });

  test('the environment (which the runner flags set) overrides; a bad value is named', () => {
    const env = {
      [SOAK_ENV.seconds]: '120',
      [SOAK_ENV.rate]: '2.5',
      [SOAK_ENV.providers]: 'process',
    };
    assert.deepEqual(soakSettings(env, true), {
      seconds: 120,
      ratePerSecond: 2.5,
      providers: ['process'],
    });
    assert.throws(() => soakSettings({ [SOAK_ENV.seconds]: '0' }, false), /VK_CHAOS_SOAK_SECONDS/);
    assert.throws(() => soakSettings({ [SOAK_ENV.rate]: 'fast' }, false), /VK_CHAOS_SOAK_RATE/);
    assert.throws(
      () => soakSettings({ [SOAK_ENV.providers]: 'mock,docker' }, false),
      /VK_CHAOS_SOAK_PROVIDERS/,
    );
  });

  test('the warm-up is 10 % of the churn or 60 s; the timeout covers the churn, drain and start-up', () => {
    assert.equal(warmupMs(120), 12_000);
    assert.equal(warmupMs(7200), 60_000);
    const full = soakSettings({}, false);
    // The providers churn at the same time: one churn's length, plus the drain and start-up.
    assert.ok(soakTimeoutSeconds(full) > 7200 + 2 * 60);
    assert.ok(soakTimeoutSeconds(full) < 2 * 7200);
  });
});
