import assert from 'node:assert/strict';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import type { ContainerLogOptions } from '../../../../src/provider.js';
import {
  LogStamper,
  readLogFile,
  type LogSource,
  type OpenLogFile,
} from '../../../../src/providers/process/logs.js';
import { waitFor } from '../../../helpers/wait.js';

const MiB = 1024 * 1024;

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vk-process-logs-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

/** Opens files for reading and counts the bytes read through them. */
function counting(): { open: OpenLogFile; bytes: () => number; reads: () => number } {
  let bytes = 0;
  let reads = 0;
  return {
    open: async (path) => {
      const file = await open(path, 'r');
      return {
        read: async (buffer, offset, length, position) => {
          const result = await file.read(buffer, offset, length, position);
          bytes += result.bytesRead;
          reads++;
          return result;
        },
        stat: () => file.stat(),
        close: () => file.close(),
      };
    },
    bytes: () => bytes,
    reads: () => reads,
  };
}

const options = (o: Partial<ContainerLogOptions>): ContainerLogOptions => ({
  follow: false,
  previous: false,
  timestamps: false,
  ...o,
});

const read = (source: LogSource, o: Partial<ContainerLogOptions>): Promise<string> =>
  text(readLogFile(source, options(o), new AbortController().signal));

const T0 = Date.parse('2026-01-01T00:00:00Z');

test('logs: the last line of 10 MiB of line breaks is found without loading the file', async (t) => {
  const path = join(scratch(t), '0.log');
  writeFileSync(path, Buffer.alloc(10 * MiB, 10));
  new LogStamper(64 * MiB, 2).stamp(path, T0);
  const reads = counting();
  const heapBefore = process.memoryUsage().heapUsed;
  const started = performance.now();
  const out = await read(
    { path, maxFiles: 2, ended: () => true, open: reads.open },
    {
      tailLines: 1,
    },
  );
  const ms = performance.now() - started;
  const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
  t.diagnostic(
    `tail 1 of 10 MiB: ${ms.toFixed(1)} ms, ${String(reads.bytes())} bytes read in ` +
      `${String(reads.reads())} reads, heap growth ${(heapGrowth / MiB).toFixed(2)} MiB`,
  );
  assert.equal(out, '\n');
  assert.ok(reads.reads() > 0, 'read through the given open');
  assert.ok(reads.bytes() <= 128 * 1024, `read ${String(reads.bytes())} bytes`);
  assert.ok(heapGrowth < 64 * MiB, `heap grew by ${String(heapGrowth)} bytes`);
  // With timestamps the last line is stamped too.
  assert.equal(
    await read({ path, maxFiles: 2, ended: () => true }, { tailLines: 2, timestamps: true }),
    '2026-01-01T00:00:00.000000000Z \n'.repeat(2),
  );
});

test('logs: limitBytes reads about that many bytes of a large file', async (t) => {
  const path = join(scratch(t), '0.log');
  writeFileSync(path, Buffer.from('0123456789abcdef\n'.repeat(MiB)));
  new LogStamper(64 * MiB, 2).stamp(path, T0);
  const plain = counting();
  const out = await read(
    { path, maxFiles: 2, ended: () => true, open: plain.open },
    {
      limitBytes: 1000,
    },
  );
  assert.equal(out, '0123456789abcdef\n'.repeat(59).slice(0, 1000));
  assert.ok(plain.reads() > 0, 'read through the given open');
  assert.ok(plain.bytes() <= 1000, `read ${String(plain.bytes())} bytes`);
  // Lines with timestamps are read a chunk at a time.
  const stamped = counting();
  const out2 = await read(
    { path, maxFiles: 2, ended: () => true, open: stamped.open },
    {
      limitBytes: 1000,
      timestamps: true,
    },
  );
  assert.equal(out2.length, 1000);
  assert.ok(out2.startsWith('2026-01-01T00:00:00.000000000Z 0123456789abcdef\n'));
  assert.ok(stamped.bytes() <= 64 * 1024, `read ${String(stamped.bytes())} bytes`);
  t.diagnostic(`limitBytes 1000: ${String(plain.bytes())} / ${String(stamped.bytes())} bytes read`);
});

test('logs: since starts at the first line not older, reading from the end', async (t) => {
  const path = join(scratch(t), '0.log');
  const stamper = new LogStamper(64 * MiB, 2);
  writeFileSync(path, Buffer.from('old line\n'.repeat(MiB)));
  stamper.stamp(path, T0);
  appendFileSync(path, 'new one\nnew two\n');
  stamper.stamp(path, T0 + 60_000);
  const reads = counting();
  const source = { path, maxFiles: 2, ended: () => true, open: reads.open };
  assert.equal(await read(source, { sinceTime: new Date(T0 + 30_000) }), 'new one\nnew two\n');
  assert.ok(reads.bytes() <= 128 * 1024, `read ${String(reads.bytes())} bytes`);
  // since and tail together: the later start wins.
  assert.equal(await read(source, { sinceTime: new Date(T0 + 30_000), tailLines: 1 }), 'new two\n');
  assert.equal(
    await read(source, { sinceTime: new Date(T0), tailLines: 3 }),
    'old line\nnew one\nnew two\n',
  );
  // A since in the future leaves nothing.
  assert.equal(await read(source, { sinceSeconds: 0, sinceTime: new Date(T0 + 120_000) }), '');
  t.diagnostic(`since on 9 MiB: ${String(reads.bytes())} bytes read in total`);
});

test('logs: tail, since and timestamps span the rotated files, newest first', async (t) => {
  const path = join(scratch(t), '0.log');
  const stamper = new LogStamper(24, 2);
  appendFileSync(path, 'a1\na2\na3\na4\na5\na6\na7\na8\na9\n'); // 27 bytes: rotated
  stamper.stamp(path, T0);
  await stamper.idle();
  appendFileSync(path, 'b1\nb2\n');
  stamper.stamp(path, T0 + 1000);
  appendFileSync(path, 'b3 partial');
  stamper.stamp(path, T0 + 2000);
  const source = { path, maxFiles: 2, ended: () => true };
  // The copy is the last 24 bytes from a line start, with its times.
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'a2\na3\na4\na5\na6\na7\na8\na9\n');
  assert.equal(await read(source, {}), 'a2\na3\na4\na5\na6\na7\na8\na9\nb1\nb2\nb3 partial');
  assert.equal(await read(source, { tailLines: 4 }), 'a9\nb1\nb2\nb3 partial');
  assert.equal(
    await read(source, { tailLines: 4, timestamps: true }),
    '2026-01-01T00:00:00.000000000Z a9\n' +
      '2026-01-01T00:00:01.000000000Z b1\n' +
      '2026-01-01T00:00:01.000000000Z b2\n' +
      '2026-01-01T00:00:02.000000000Z b3 partial',
  );
  assert.equal(await read(source, { sinceTime: new Date(T0 + 500) }), 'b1\nb2\nb3 partial');
  assert.equal(await read(source, { sinceTime: new Date(T0 + 1500) }), 'b3 partial');
  assert.equal(
    await read(source, { sinceTime: new Date(T0), tailLines: 9 }),
    'a3\na4\na5\na6\na7\na8\na9\nb1\nb2\nb3 partial'.split('\n').slice(1).join('\n'),
  );
  assert.equal(await read(source, { tailLines: 0 }), '');
  assert.equal(await read(source, { tailLines: 100, limitBytes: 4 }), 'a2\na');
  // Another rotation shifts the copy to .2.
  appendFileSync(path, '\nc1 long enough to pass the limit\n');
  stamper.stamp(path, T0 + 3000);
  await stamper.idle();
  assert.equal(readFileSync(`${path}.2`, 'utf8'), 'a2\na3\na4\na5\na6\na7\na8\na9\n');
  // A line longer than the limit keeps its end.
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'nough to pass the limit\n');
  assert.equal(readFileSync(path, 'utf8'), '');
  assert.equal(await read(source, { tailLines: 2 }), 'a9\nnough to pass the limit\n');
  t.diagnostic('rotated twice');
});

test('logs: follow reads only the bytes appended after its start', async (t) => {
  const path = join(scratch(t), '0.log');
  writeFileSync(path, Buffer.alloc(10 * MiB, 10));
  const reads = counting();
  let ended = false;
  const stream = readLogFile(
    { path, maxFiles: 2, ended: () => ended, open: reads.open },
    options({ follow: true, tailLines: 0 }),
    new AbortController().signal,
  );
  const all = text(stream);
  await waitFor(() => reads.reads() > 0, { what: 'the follower to start' });
  const before = reads.bytes();
  let appended = 0;
  for (let i = 0; i < 20; i++) {
    const chunk = `line ${String(i)}\n`;
    appendFileSync(path, chunk);
    appended += chunk.length;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  appendFileSync(path, 'last, no break');
  appended += 'last, no break'.length;
  await waitFor(() => reads.bytes() - before >= appended - 'last, no break'.length, {
    what: 'the follower to read the appended lines',
  });
  ended = true;
  const out = await all;
  const after = reads.bytes() - before;
  t.diagnostic(`follow: ${String(before)} bytes read at the start, ${String(after)} after`);
  assert.equal(
    out,
    Array.from({ length: 20 }, (_, i) => `line ${String(i)}\n`).join('') + 'last, no break',
  );
  assert.ok(before <= 64 * 1024, `read ${String(before)} bytes at the start`);
  assert.ok(after <= 2 * appended, `read ${String(after)} bytes for ${String(appended)} appended`);
});

test('logs: rotation under a fast writer keeps rotated files within the limit; follow goes on', async (t) => {
  const dir = scratch(t);
  const path = join(dir, '0.log');
  const limit = 256 * 1024;
  writeFileSync(path, '');
  const stamper = new LogStamper(limit, 2);
  const delayHistogram = monitorEventLoopDelay({ resolution: 5 });
  delayHistogram.enable();
  let ended = false;
  const followed = text(
    readLogFile(
      { path, maxFiles: 2, ended: () => ended },
      options({ follow: true }),
      new AbortController().signal,
    ),
  );
  const writer = await open(path, 'a');
  let next = 0;
  let writing = true;
  const written = (async () => {
    while (next < 400_000) {
      let batch = '';
      for (let i = 0; i < 2000; i++) batch += `${String(next++)}\n`;
      await writer.write(batch);
      await new Promise((resolve) => setImmediate(resolve));
    }
    writing = false;
  })();
  let oversized = '';
  let rotations = 0;
  let lastCopy: number | undefined;
  while (writing) {
    stamper.stamp(path);
    for (const f of [`${path}.1`, `${path}.2`]) {
      if (existsSync(f) && statSync(f).size > limit)
        oversized = `${f}: ${String(statSync(f).size)}`;
    }
    const copy = existsSync(`${path}.1`) ? statSync(`${path}.1`).ino : undefined;
    if (copy !== lastCopy) rotations++;
    lastCopy = copy;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await written;
  await writer.close();
  stamper.stamp(path);
  await stamper.idle();
  stamper.stamp(path);
  await new Promise((resolve) => setTimeout(resolve, 300));
  ended = true;
  const out = await followed;
  delayHistogram.disable();
  t.diagnostic(
    `fast writer: ${String(rotations)} rotations, event loop delay p99 ` +
      `${(delayHistogram.percentile(99) / 1e6).toFixed(1)} ms, max ` +
      `${(delayHistogram.max / 1e6).toFixed(1)} ms; follower saw ${String(out.length)} bytes`,
  );
  assert.equal(oversized, '');
  assert.ok(rotations >= 2, `${String(rotations)} rotations`);
  assert.ok(statSync(`${path}.1`).size <= limit);
  // The follower sees lines in order, each at most once, ending with the last one written.
  const numbers = out.trimEnd().split('\n').map(Number);
  for (let i = 1; i < numbers.length; i++) {
    const [a, b] = [numbers[i - 1] ?? 0, numbers[i] ?? 0];
    if (!(b > a)) assert.fail(`line ${String(b)} after ${String(a)}`);
  }
  // A rotation loses what is written between its size check and the truncation; the
  // follower ends with the last line kept.
  const kept = (readFileSync(path, 'utf8') || readFileSync(`${path}.1`, 'utf8')).trimEnd();
  assert.equal(numbers.at(-1), Number(kept.slice(kept.lastIndexOf('\n') + 1)));
  t.diagnostic(`${String(numbers.length)} of 400000 lines followed`);
});
