import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkGoFlags, withoutKlogFlags } from '../../../src/cli/go-flags.js';
import { main } from '../../../src/cli/main.js';

async function capture(argv: string[]): Promise<{ code: number; err: string[] }> {
  const err: string[] = [];
  const code = await main(argv, { out: () => undefined, err: (l) => err.push(l) });
  return { code, err };
}

test('Go flags that do nothing in Go either are accepted with a note', () => {
  const notes = checkGoFlags({ metricsAddr: ':10255', enableNodeLease: true });
  assert.equal(notes.length, 2);
  assert.match(notes[0] ?? '', /^--metrics-addr is not used: .*\/metrics on the kubelet port/);
  assert.match(notes[1] ?? '', /^--enable-node-lease is not used: .*Lease/);
  assert.deepEqual(checkGoFlags({ taint: 'example.com/vk' }), []);
});

test('--namespace is refused with one line saying what to use instead, exit 1', async () => {
  const r = await capture([
    'run',
    '--kubeconfig',
    '/nonexistent/kubeconfig',
    '--namespace',
    'default',
  ]);
  assert.equal(r.code, 1);
  assert.equal(r.err.length, 1);
  assert.match(r.err[0] ?? '', /^virtual-kubelet: --namespace is not used: /);
});

for (const [flag, value, says] of [
  [
    '--trace-exporter',
    'jaeger',
    /'jaeger' is not an exporter of this agent: .*--trace-exporter otlp/,
  ],
  ['--trace-sample-rate', '150', /expected always, never or a percentage from 0 to 100/],
  ['--trace-tag', 'novalue', /expected key=value/],
] as const) {
  test(`${flag} ${value} is refused with one line, exit 2 (a usage error)`, async () => {
    const r = await capture(['run', '--kubeconfig', '/nonexistent/kubeconfig', flag, value]);
    assert.equal(r.code, 2, r.err.join('\n'));
    assert.equal(r.err.length, 1, r.err.join('\n'));
    assert.match(r.err[0] ?? '', says);
  });
}

test('Go flags without a meaning here are not in the help; the trace flags are', async () => {
  let help = '';
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = (chunk: string): boolean => {
    help += chunk;
    return true;
  };
  try {
    await main(['run', '--help'], { out: () => undefined, err: () => undefined });
  } finally {
    process.stdout.write = write;
  }
  assert.match(help, /--log-format/);
  assert.doesNotMatch(help, /--metrics-addr|--namespace/);
  for (const flag of [
    '--trace-sample-rate',
    '--trace-exporter',
    '--trace-service-name',
    '--trace-tag',
  ])
    assert.match(help, new RegExp(flag));
});

test('klog flags are dropped with their values, with one note', () => {
  const r = withoutKlogFlags([
    '--klog.v',
    '4',
    '--klog.logtostderr',
    '--nodename',
    'n1',
    '--klog.vmodule=x=2',
    '--',
    '--klog.v',
  ]);
  assert.deepEqual(r.argv, ['--nodename', 'n1', '--', '--klog.v']);
  assert.match(
    r.note ?? '',
    /^--klog\.v, --klog\.logtostderr, --klog\.vmodule not used: .*--log-level/,
  );
  assert.deepEqual(withoutKlogFlags(['--nodename', 'n1']), { argv: ['--nodename', 'n1'] });
});

test('a start-like process stops when its parent goes away (npm does not pass SIGTERM on)', async (t) => {
  // A parent that starts a child watching it, waits until it watches, then exits; the child
  // must notice on its own.
  const dir = await mkdtemp(join(tmpdir(), 'vk-parent-gone-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const marker = join(dir, 'watching');
  const util = new URL('../../../src/cli/util.ts', import.meta.url).href;
  const child = `const { parentGoneSignal } = await import(${JSON.stringify(util)});
const { writeFileSync } = await import('node:fs');
const s = parentGoneSignal({ out() {}, err: (l) => process.stdout.write(l + '\\n'), exitCode: 0 }, 50);
const keep = setInterval(() => {}, 1000);
s.addEventListener('abort', () => { clearInterval(keep); process.stdout.write('stopped\\n'); });
writeFileSync(${JSON.stringify(marker)}, '');`;
  const parent = `const { spawn } = require('node:child_process');
const { existsSync } = require('node:fs');
spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', ${JSON.stringify(child)}], { stdio: ['ignore', 'inherit', 'inherit'] });
setInterval(() => { if (existsSync(${JSON.stringify(marker)})) process.exit(0); }, 20);`;
  const p = spawn(process.execPath, ['-e', parent], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  // The pipe closes once the parent and the child both have exited.
  await new Promise((resolve) => p.stdout.on('close', resolve));
  assert.match(out, /^the parent process \(\d+\) is gone: shutting down\nstopped\n$/);
});
