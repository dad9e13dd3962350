import assert from 'node:assert/strict';
import {
  appendFileSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { text } from 'node:stream/consumers';
import { test, type TestContext } from 'node:test';
import { LogStamper, readLogFile } from '../../../../src/providers/process/logs.js';
import { writeVolume } from '../../../../src/providers/process/volumes.js';

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'vk-process-unit-'));
  t.after(() => {
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

const file = (path: string, content: string, mode = 0o644) => ({
  path,
  data: Buffer.from(content),
  mode,
});

test('writeVolume swaps content atomically through ..data and keeps top-level links', (t) => {
  const dir = join(scratch(t), 'vol');
  writeVolume(dir, { name: 'v', files: [file('a', 'one'), file('sub/b', 'two', 0o600)] });
  assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'one');
  assert.equal(readFileSync(join(dir, 'sub/b'), 'utf8'), 'two');
  assert.equal(readlinkSync(join(dir, 'a')), '..data/a');
  const first = readlinkSync(join(dir, '..data'));
  writeVolume(dir, { name: 'v', files: [file('a', 'three')] });
  assert.equal(readFileSync(join(dir, 'a'), 'utf8'), 'three');
  assert.notEqual(readlinkSync(join(dir, '..data')), first);
  // The old data directory and the name that went away are gone.
  const entries = readdirSync(dir).sort();
  assert.deepEqual(
    entries.filter((e) => !e.startsWith('..')),
    ['a'],
  );
  assert.equal(entries.filter((e) => e.startsWith('..') && e !== '..data').length, 1);
  assert.throws(
    () => writeVolume(dir, { name: 'v', files: [file('../escape', 'x')] }),
    /invalid file path/,
  );
});

test('logs: lines get the time they were first seen; tail, since, timestamps, limit', async (t) => {
  const dir = scratch(t);
  const path = join(dir, '0.log');
  const stamper = new LogStamper(1024 * 1024, 2);
  appendFileSync(path, 'one\ntwo\n');
  stamper.stamp(path, Date.parse('2026-01-01T00:00:00Z'));
  appendFileSync(path, 'three\n');
  stamper.stamp(path, Date.parse('2026-01-01T00:00:05Z'));
  const read = (o: Partial<Parameters<typeof readLogFile>[1]>): Promise<string> =>
    text(
      readLogFile(
        { path, maxFiles: 2, ended: () => true },
        { follow: false, previous: false, timestamps: false, ...o },
        new AbortController().signal,
      ),
    );
  assert.equal(await read({}), 'one\ntwo\nthree\n');
  assert.equal(await read({ tailLines: 1 }), 'three\n');
  assert.equal(
    await read({ timestamps: true, tailLines: 2 }),
    '2026-01-01T00:00:00.000000000Z two\n2026-01-01T00:00:05.000000000Z three\n',
  );
  assert.equal(await read({ sinceTime: new Date('2026-01-01T00:00:01Z') }), 'three\n');
  assert.equal(await read({ limitBytes: 5 }), 'one\nt');
  // A restarted agent carries on from the index: nothing is stamped twice.
  new LogStamper(1024 * 1024, 2).stamp(path, Date.parse('2026-01-01T00:00:09Z'));
  assert.equal(readFileSync(`${path}.idx`, 'utf8').trim().split('\n').length, 2);
});

test('logs: rotation keeps earlier lines readable and follow picks up new ones', async (t) => {
  const dir = scratch(t);
  const path = join(dir, '0.log');
  // A rotation keeps the last maxLogBytes, from a line start.
  const stamper = new LogStamper(12, 2);
  appendFileSync(path, 'first line\nsecond line\n');
  stamper.stamp(path);
  await stamper.idle();
  assert.equal(readFileSync(path, 'utf8'), '');
  assert.equal(readFileSync(`${path}.1`, 'utf8'), 'second line\n');
  appendFileSync(path, 'third\n');
  let ended = false;
  const stream = readLogFile(
    { path, maxFiles: 2, ended: () => ended },
    { follow: true, previous: false, timestamps: false },
    new AbortController().signal,
  );
  const all = text(stream);
  setTimeout(() => {
    appendFileSync(path, 'fourth\n');
    setTimeout(() => (ended = true), 300);
  }, 300);
  assert.equal(await all, 'second line\nthird\nfourth\n');
});
