import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, appendFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseLogLine, readCriLog, tailOffset } from '../../../../src/providers/cri/index.js';
import { CHUNK_BYTES } from '../../../../src/providers/cri/logs.js';
import { waitFor } from '../../../helpers/wait.js';

const line = (sec: number, text: string, tag = 'F', stream = 'stdout'): string =>
  `2026-01-01T00:00:${String(sec).padStart(2, '0')}.123456789Z ${stream} ${tag} ${text}\n`;

async function read(stream: AsyncIterable<Buffer | string>): Promise<string> {
  let out = '';
  for await (const c of stream) out += c.toString();
  return out;
}

async function file(content: string): Promise<{ path: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'vk-cri-logs-'));
  const path = join(dir, '0.log');
  await writeFile(path, content);
  return { path, done: () => rm(dir, { recursive: true, force: true }) };
}

const base = { follow: false, previous: false, timestamps: false, running: () => false };

test('a CRI log line parses into time, stream, tag and content', () => {
  assert.deepEqual(parseLogLine('2026-01-01T00:00:00Z stderr F oops: x y'), {
    time: '2026-01-01T00:00:00Z',
    stream: 'stderr',
    partial: false,
    content: 'oops: x y',
  });
  assert.equal(parseLogLine('2026-01-01T00:00:00Z stdout P ')?.partial, true);
  assert.equal(parseLogLine('garbage'), undefined);
  assert.equal(parseLogLine('2026-01-01T00:00:00Z other F x'), undefined);
});

test('partial records join into one line; timestamps prefix each line', async () => {
  const f = await file(line(1, 'hel', 'P') + line(2, 'lo') + line(3, 'world', 'F', 'stderr'));
  try {
    assert.equal(await read(readCriLog(f.path, base, AbortSignal.timeout(5000))), 'hello\nworld\n');
    assert.equal(
      await read(readCriLog(f.path, { ...base, timestamps: true }, AbortSignal.timeout(5000))),
      '2026-01-01T00:00:01.123456789Z hello\n2026-01-01T00:00:03.123456789Z world\n',
    );
  } finally {
    await f.done();
  }
});

test('tail, since and limitBytes shape the output', async () => {
  const f = await file([1, 2, 3, 4, 5].map((i) => line(i, `l${String(i)}`)).join(''));
  try {
    const s = AbortSignal.timeout(5000);
    assert.equal(await read(readCriLog(f.path, { ...base, tailLines: 2 }, s)), 'l4\nl5\n');
    assert.equal(await read(readCriLog(f.path, { ...base, tailLines: 0 }, s)), '');
    assert.equal(
      await read(readCriLog(f.path, { ...base, tailLines: 99 }, s)),
      'l1\nl2\nl3\nl4\nl5\n',
    );
    assert.equal(
      await read(readCriLog(f.path, { ...base, sinceTime: new Date('2026-01-01T00:00:04Z') }, s)),
      'l4\nl5\n',
    );
    assert.equal(await read(readCriLog(f.path, { ...base, limitBytes: 4 }, s)), 'l1\nl');
  } finally {
    await f.done();
  }
});

test('tail finds lines across chunk boundaries without reading the whole file', async () => {
  const long = 'x'.repeat(CHUNK_BYTES / 4);
  const f = await file(
    Array.from({ length: 12 }, (_, i) => line(i, `${String(i)}${long}`)).join(''),
  );
  try {
    const offset = await tailOffset(f.path, 3);
    const out = await read(
      readCriLog(f.path, { ...base, tailLines: 3 }, AbortSignal.timeout(5000)),
    );
    assert.ok(offset > CHUNK_BYTES);
    assert.deepEqual(
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => l.slice(0, 2)),
      ['9x', '10', '11'],
    );
  } finally {
    await f.done();
  }
});

test('follow streams appended records until the container stops', async () => {
  const f = await file(line(1, 'first'));
  let running = true;
  try {
    const stream = readCriLog(
      f.path,
      { ...base, follow: true, running: () => running, pollMs: 20 },
      AbortSignal.timeout(10_000),
    );
    let out = '';
    stream.on('data', (c: Buffer) => (out += c.toString()));
    const ended = new Promise((r) => stream.on('end', r));
    await waitFor(() => out === 'first\n' || undefined, { what: 'the first line' });
    await appendFile(f.path, line(2, 'second'));
    await waitFor(() => out === 'first\nsecond\n' || undefined, { what: 'the appended line' });
    running = false;
    await ended;
  } finally {
    await f.done();
  }
});
