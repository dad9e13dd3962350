import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Fifo } from '../../../src/queue/fifo.js';

test('items come out in the order they went in, across compactions', () => {
  const fifo = new Fifo<number>();
  assert.equal(fifo.shift(), undefined);
  let next = 0;
  let expected = 0;
  // Interleave pushes and shifts so the head passes the compaction threshold many times.
  for (let round = 0; round < 50; round++) {
    for (let i = 0; i < 1_500; i++) fifo.push(next++);
    for (let i = 0; i < 1_000; i++) assert.equal(fifo.shift(), expected++);
    assert.equal(fifo.length, next - expected);
  }
  while (fifo.length > 0) assert.equal(fifo.shift(), expected++);
  assert.equal(expected, next);
  assert.equal(fifo.shift(), undefined);
});

test('clear empties the list', () => {
  const fifo = new Fifo<string>();
  fifo.push('a');
  fifo.push('b');
  fifo.clear();
  assert.equal(fifo.length, 0);
  assert.equal(fifo.shift(), undefined);
  fifo.push('c');
  assert.equal(fifo.shift(), 'c');
});
