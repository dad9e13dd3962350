import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LruCache } from '../../../src/api/lru-cache.js';

test('a full cache drops its least recently used entry; a hit makes an entry recent', () => {
  const cache = new LruCache<number>({ maxEntries: 2 });
  cache.set('a', 1, 1_000, 0);
  cache.set('b', 2, 1_000, 0);
  assert.equal(cache.get('a', 1), 1);
  cache.set('c', 3, 1_000, 2);
  assert.deepEqual(
    ['a', 'b', 'c'].map((k) => cache.get(k, 3)),
    [1, undefined, 3],
  );
  assert.equal(cache.size, 2);
});

test('entries expire after their TTL, hits or not', () => {
  const cache = new LruCache<string>({ maxEntries: 4 });
  cache.set('k', 'v', 100, 0);
  assert.equal(cache.get('k', 99), 'v');
  assert.equal(cache.get('k', 100), undefined);
  assert.equal(cache.size, 0);
  cache.set('k', 'w', 100, 200);
  cache.delete('k');
  assert.equal(cache.get('k', 201), undefined);
});

test('maxEntries must be a positive integer', () => {
  assert.throws(() => new LruCache({ maxEntries: 0 }), /maxEntries must be a positive integer/);
  assert.throws(() => new LruCache({ maxEntries: 1.5 }), RangeError);
});
