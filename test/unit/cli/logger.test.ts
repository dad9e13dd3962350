import assert from 'node:assert/strict';
import { test } from 'node:test';
import { agentLogger, textLine } from '../../../src/cli/logger.js';

function lines(format: 'json' | 'text' = 'json'): {
  out: string[];
  log: ReturnType<typeof agentLogger>;
} {
  const out: string[] = [];
  return { out, log: agentLogger({ level: 'debug', format, write: (l) => out.push(l) }) };
}

/** How often `"key":` appears in a JSON line. */
const count = (line: string, key: string): number => line.split(`"${key}":`).length - 1;

test('a child binding a key its parent has prints the key once, the child value winning', () => {
  const { out, log } = lines();
  log.child({ provider: 'process' }).child({ provider: 'process', node: 'n1' }).info('ready');
  log.child({ provider: 'a' }).child({ provider: 'b' }).info('other');
  assert.equal(out.length, 2);
  assert.equal(count(out[0] ?? '', 'provider'), 1);
  assert.equal(count(out[0] ?? '', 'node'), 1);
  assert.equal((JSON.parse(out[1] ?? '{}') as { provider: string }).provider, 'b');
});

test('a line field equal to a binding is not printed twice; a different value is kept', () => {
  const { out, log } = lines();
  const child = log.child({ node: 'n1' });
  child.info({ node: 'n1', pod: 'ns/a' }, 'created');
  child.warn({ node: 'n2' }, 'moved');
  assert.equal(count(out[0] ?? '', 'node'), 1);
  assert.equal(count(out[0] ?? '', 'pod'), 1);
  assert.match(out[1] ?? '', /"node":"n2"/);
});

test('errors keep their serialization under a child', () => {
  const { out, log } = lines();
  log.child({ node: 'n1' }).error({ err: new Error('boom') }, 'failed');
  const entry = JSON.parse(out[0] ?? '{}') as { err?: { message?: string; stack?: string } };
  assert.equal(entry.err?.message, 'boom');
  assert.ok(entry.err?.stack);
});

test('the level filters lines', () => {
  const out: string[] = [];
  const log = agentLogger({ level: 'warn', write: (l) => out.push(l) });
  log.info('hidden');
  log.debug('hidden');
  log.warn('shown');
  assert.equal(out.length, 1);
});

test('text format: time, level, message, then key=value with quoting where needed', () => {
  const { out, log } = lines('text');
  log.child({ node: 'vk-1' }).info({ pod: 'ns/a', reason: 'no space left', n: 3 }, 'pod created');
  const line = out[0] ?? '';
  assert.match(
    line,
    /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO {2}pod created node=vk-1 pod=ns\/a reason="no space left" n=3$/,
  );
  assert.equal(textLine('not json'), 'not json');
});
