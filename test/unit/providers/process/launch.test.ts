import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { parseProcessConfig } from '../../../../src/providers/process/config.js';
import {
  expandReferences,
  lookupImage,
  resolveCommand,
  shellQuote,
} from '../../../../src/providers/process/launch.js';
import { formatGoDuration } from '../../../../src/kubelet/time.js';

test('images are found by name, by name without tag or registry, and by glob', () => {
  const table = { busybox: { cmd: ['sh'] }, 'registry.local/*': { cmd: ['run'] } };
  assert.deepEqual(lookupImage('busybox', table), { cmd: ['sh'] });
  assert.deepEqual(lookupImage('busybox:1.36', table), { cmd: ['sh'] });
  assert.deepEqual(lookupImage('docker.io/library/busybox@sha256:abc', table), { cmd: ['sh'] });
  assert.deepEqual(lookupImage('registry.local/team/app:2', table), { cmd: ['run'] });
  assert.equal(lookupImage('nginx', table), undefined);
});

test('command replaces the entrypoint and drops cmd; args replace cmd', () => {
  const env = new Map([['NAME', 'world']]);
  const table = { img: { entrypoint: ['/entry'], cmd: ['default'] } };
  const argv = (c: Parameters<typeof resolveCommand>[0]): unknown => {
    const r = resolveCommand(c, env, table);
    return 'argv' in r ? r.argv : r.error;
  };
  assert.deepEqual(argv({ name: 'a', image: 'img' }), ['/entry', 'default']);
  assert.deepEqual(argv({ name: 'a', image: 'img', args: ['x'] }), ['/entry', 'x']);
  assert.deepEqual(argv({ name: 'a', image: 'img', command: ['sh'] }), ['sh']);
  assert.deepEqual(argv({ name: 'a', image: 'img', command: ['echo'], args: ['$(NAME)'] }), [
    'echo',
    'world',
  ]);
  assert.match(String(argv({ name: 'a', image: 'unknown' })), /no command, and image "unknown"/);
});

test('$(VAR) references expand as the kubelet expands them', () => {
  const env = new Map([['A', '1']]);
  assert.equal(expandReferences('$(A)-$(B)-$$(A)-$$', env), '1-$(B)-$(A)-$');
});

test('shellQuote survives a round trip through sh', () => {
  for (const s of ["it's", 'a b', '$HOME', '`x`', '"q"', '\\n', '']) {
    const r = spawnSync('sh', ['-c', `printf %s ${shellQuote(s)}`]);
    assert.equal(r.stdout.toString(), s);
  }
});

test('config: unknown fields and bad values are refused', () => {
  assert.throws(() => parseProcessConfig({ nope: 1 }), /unknown field "nope"/);
  assert.throws(() => parseProcessConfig({ maxLogBytes: -1 }), /maxLogBytes must be/);
  assert.throws(() => parseProcessConfig({ images: { x: { cmd: 'sh' } } }), /array of strings/);
  assert.throws(
    () => parseProcessConfig({ memory: '12 apples' }),
    /^Error: process provider config: memory: invalid quantity "12 apples"$|memory: invalid quantity/,
  );
  assert.throws(
    () => parseProcessConfig({ reserved: { cpu: '-1' } }),
    /reserved\.cpu must be a non-negative quantity/,
  );
  assert.deepEqual(parseProcessConfig({ cpu: '2', memory: '64Mi', reserved: { cpu: '100m' } }), {
    cpu: '2',
    memory: '64Mi',
    reserved: { cpu: '100m' },
  });
  assert.deepEqual(parseProcessConfig({ images: { x: { cmd: ['sh'] } } }), {
    images: { x: { cmd: ['sh'] } },
  });
});

test('back-off durations print as Go durations', () => {
  assert.equal(formatGoDuration(10_000), '10s');
  assert.equal(formatGoDuration(80_000), '1m20s');
  assert.equal(formatGoDuration(300_000), '5m0s');
});
