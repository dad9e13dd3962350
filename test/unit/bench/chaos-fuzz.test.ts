import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { inflateSync } from 'node:zlib';
import { SPDY_DICTIONARY } from '../../../src/spdy/dictionary.js';
import {
  checkResponseHead,
  compressFirstBlock,
  randomRequest,
  rawRequest,
  Rng,
  spdyHeaderBlock,
  spdySynStream,
} from '../../../bench/chaos/fuzz-gen.js';

const target = { namespace: 'ns', pod: 'p', container: 'c' };

describe('chaos fuzz: the well-formedness check', () => {
  test('accepts a complete response head', () => {
    const r = checkResponseHead(
      Buffer.from('HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nX-Empty:\r\n\r\nbody'),
    );
    assert.deepEqual(r, { ok: true, code: 404, headerBytes: 62 });
    assert.equal(checkResponseHead(Buffer.from('HTTP/1.1 101\r\n\r\n')).ok, true);
  });

  test('waits for the blank line', () => {
    assert.deepEqual(checkResponseHead(Buffer.from('HTTP/1.1 200 OK\r\nA: b\r\n')), {
      ok: 'incomplete',
    });
    assert.deepEqual(checkResponseHead(Buffer.alloc(0)), { ok: 'incomplete' });
    assert.deepEqual(checkResponseHead(Buffer.from('HTT')), { ok: 'incomplete' });
  });

  test('refuses what is not HTTP: bad codes, bad status lines, bad header lines', () => {
    for (const text of [
      'HTTP/1.1 600 Weird\r\n\r\n',
      'HTTP/1.1 099 Low\r\n\r\n',
      'HTTP/1.1 20 Short\r\n\r\n',
      'HTTP/2 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nno colon\r\n\r\n',
      'HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nA: b\x00c\r\n\r\n',
      'garbage and more garbage',
    ])
      assert.equal(checkResponseHead(Buffer.from(text, 'latin1')).ok, false, JSON.stringify(text));
  });
});

describe('chaos fuzz: the generators', () => {
  test('the same seed gives the same requests', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    for (let i = 0; i < 50; i++)
      assert.deepEqual(rawRequest(randomRequest(a, target)), rawRequest(randomRequest(b, target)));
  });

  test('requests marked valid are well-formed HTTP/1.1 with a body framed as declared', () => {
    const rng = new Rng(7);
    let valid = 0;
    for (let i = 0; i < 2000; i++) {
      const req = randomRequest(rng, target);
      const text = rawRequest(req).toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      assert.ok(end > 0);
      if (!req.valid) continue;
      valid++;
      const [line = '', ...headers] = text.slice(0, end).split('\r\n');
      assert.match(line, /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ \S+ HTTP\/1\.1$/);
      for (const h of headers) assert.match(h, /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+: [\t -~\x80-\xff]*$/);
      const length = headers.find((h) => h.startsWith('Content-Length: '));
      if (length) assert.equal(Number(length.slice(16)), req.body.length);
      else assert.ok(headers.includes('Transfer-Encoding: chunked'));
      assert.ok(headers.includes('Connection: close'));
    }
    assert.ok(valid > 1800, `most requests are valid (${String(valid)})`);
  });

  test('SPDY frames: a SYN_STREAM header block inflates with the SPDY dictionary', () => {
    const block = spdyHeaderBlock([['streamtype', 'stdout']]);
    const frame = spdySynStream(3, compressFirstBlock(block));
    assert.equal(frame.readUInt16BE(0), 0x8003);
    assert.equal(frame.readUInt16BE(2), 1);
    assert.equal(frame.readUInt32BE(4) & 0xffffff, frame.length - 8);
    assert.equal(frame.readUInt32BE(8), 3);
    const inflated = inflateSync(frame.subarray(18), {
      dictionary: SPDY_DICTIONARY,
      finishFlush: 2,
    });
    assert.deepEqual(inflated, block);
  });
});
