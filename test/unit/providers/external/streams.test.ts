import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { describe, test } from 'node:test';
import { nextChunk } from '../../../../src/providers/external/streams.js';

const never = new AbortController().signal;

describe('nextChunk', () => {
  test('joins the chunks an object-mode stream holds, up to the limit, and keeps the rest', async () => {
    const stream = Readable.from([Buffer.from('abc'), Buffer.from('def'), Buffer.from('gh')]);
    await new Promise((resolve) => stream.once('readable', resolve));
    const got: string[] = [];
    for (;;) {
      const chunk = await nextChunk(stream, never, 4);
      if (chunk === undefined) break;
      assert.ok(chunk.length <= 4, `a chunk of ${String(chunk.length)} bytes`);
      got.push(chunk.toString());
    }
    assert.equal(got.join(''), 'abcdefgh');
    assert.ok(got.length < 8, `the bytes came one by one: ${got.join('|')}`);
  });

  test('hands over everything a byte stream holds, at most the limit at once', async () => {
    const stream = new PassThrough({ highWaterMark: 1024 });
    stream.write(Buffer.alloc(300, 1));
    stream.write(Buffer.alloc(300, 2));
    stream.end();
    const first = await nextChunk(stream, never, 500);
    assert.equal(first?.length, 500);
    const second = await nextChunk(stream, never, 500);
    assert.equal(second?.length, 100);
    assert.equal(await nextChunk(stream, never, 500), undefined);
  });

  test('ends on abort', async () => {
    const stream = new PassThrough();
    const stop = new AbortController();
    const pending = nextChunk(stream, stop.signal);
    stop.abort();
    assert.equal(await pending, undefined);
    stream.destroy();
  });
});
