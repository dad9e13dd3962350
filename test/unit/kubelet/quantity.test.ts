import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VirtualKubeletError } from '../../../src/errors.js';
import {
  ceilDiv,
  parseQuantity,
  parseQuantityExact,
  quantityMilliValue,
  quantityValue,
} from '../../../src/kubelet/quantity.js';

test('plain and decimal numbers', () => {
  assert.equal(parseQuantity('1'), 1);
  assert.equal(parseQuantity('1.5'), 1.5);
  assert.equal(parseQuantity('.5'), 0.5);
  assert.equal(parseQuantity('2.'), 2);
  assert.equal(parseQuantity('+3'), 3);
  assert.equal(parseQuantity('-3'), -3);
  assert.equal(parseQuantity('0'), 0);
});

test('decimal SI suffixes', () => {
  assert.equal(parseQuantity('100m'), 0.1);
  assert.equal(parseQuantity('250m'), 0.25);
  assert.equal(parseQuantity('5u'), 0.000005);
  assert.equal(parseQuantity('7n'), 7e-9);
  assert.equal(parseQuantity('1k'), 1000);
  assert.equal(parseQuantity('1M'), 1e6);
  assert.equal(parseQuantity('1G'), 1e9);
  assert.equal(parseQuantity('1T'), 1e12);
  assert.equal(parseQuantity('1P'), 1e15);
  assert.equal(parseQuantity('2E'), 2e18);
});

test('binary SI suffixes', () => {
  assert.equal(parseQuantity('1Ki'), 1024);
  assert.equal(parseQuantity('128Mi'), 128 * 1024 * 1024);
  assert.equal(parseQuantity('1.5Gi'), 1.5 * 2 ** 30);
  assert.equal(parseQuantity('1Ti'), 2 ** 40);
  assert.equal(parseQuantity('1Pi'), 2 ** 50);
  assert.equal(parseQuantity('1Ei'), 2 ** 60);
});

test('decimal exponents, and a lone E is exa', () => {
  assert.equal(parseQuantity('1e3'), 1000);
  assert.equal(parseQuantity('1E3'), 1000);
  assert.equal(parseQuantity('1.5e-3'), 0.0015);
  assert.equal(parseQuantity('12e+2'), 1200);
  assert.equal(parseQuantity('1E'), 1e18);
});

test('invalid quantities throw InvalidInput', () => {
  for (const bad of [
    '',
    ' 1',
    '1 ',
    'm',
    '1mi',
    '1KB',
    '1e',
    '1.2.3',
    'abc',
    '1Mi5',
    '--1',
    '1e1001',
  ]) {
    assert.throws(
      () => parseQuantity(bad),
      (err: unknown) => err instanceof VirtualKubeletError && err.code === 'InvalidInput',
      bad,
    );
  }
});

test('exact parsing keeps fractions exact', () => {
  assert.deepEqual(parseQuantityExact('0.1'), { numerator: 1n, denominator: 10n });
  assert.deepEqual(parseQuantityExact('100m'), { numerator: 100n, denominator: 1000n });
  assert.deepEqual(parseQuantityExact('2Ki'), { numerator: 2048n, denominator: 1n });
});

test('Value() and MilliValue() round up as in Go', () => {
  // 0.1 * 1000 in floating point is 100.00000000000001; the exact value is 100.
  assert.equal(quantityMilliValue('0.1'), 100n);
  assert.equal(quantityMilliValue('250m'), 250n);
  assert.equal(quantityMilliValue('1.5m'), 2n);
  assert.equal(quantityMilliValue('1n'), 1n);
  assert.equal(quantityMilliValue('2'), 2000n);
  assert.equal(quantityValue('250m'), 1n);
  assert.equal(quantityValue('1.5'), 2n);
  assert.equal(quantityValue('128Mi'), 134217728n);
  assert.equal(quantityValue('0'), 0n);
  // Away from zero for negatives (inf.RoundUp).
  assert.equal(quantityValue('-1.5'), -2n);
});

test('ceilDiv rounds toward positive infinity', () => {
  assert.equal(ceilDiv(250n, 1000n), 1n);
  assert.equal(ceilDiv(2000n, 1000n), 2n);
  assert.equal(ceilDiv(0n, 7n), 0n);
  assert.equal(ceilDiv(-3n, 2n), -1n);
});
