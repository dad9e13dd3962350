import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  formatGoDuration,
  formatMicroTime,
  formatRfc3339,
  formatRfc3339NanoFixed,
} from '../../../src/kubelet/time.js';

const at = new Date('2030-01-02T03:04:05.678Z');

test('RFC 3339 at whole seconds truncates, from a Date or milliseconds', () => {
  assert.equal(formatRfc3339(at), '2030-01-02T03:04:05Z');
  assert.equal(formatRfc3339(at.getTime()), '2030-01-02T03:04:05Z');
  assert.equal(formatRfc3339(new Date('2030-01-02T03:04:05Z')), '2030-01-02T03:04:05Z');
});

test('MicroTime has six fractional digits, the nano-fixed format nine', () => {
  assert.equal(formatMicroTime(at), '2030-01-02T03:04:05.678000Z');
  assert.equal(formatRfc3339NanoFixed(at), '2030-01-02T03:04:05.678000000Z');
  assert.equal(formatRfc3339NanoFixed(0), '1970-01-01T00:00:00.000000000Z');
});

test("Go durations print as Go's time.Duration.String()", () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [0.000001, '1ns'],
    [0.0015, '1.5µs'],
    [200, '200ms'],
    [1.5, '1.5ms'],
    [1000, '1s'],
    [1500, '1.5s'],
    [10_000, '10s'],
    [80_000, '1m20s'],
    [90_500, '1m30.5s'],
    [300_000, '5m0s'],
    [3_600_000, '1h0m0s'],
    [3_723_000, '1h2m3s'],
    [-5000, '-5s'],
  ];
  for (const [ms, text] of cases) assert.equal(formatGoDuration(ms), text, String(ms));
});
