// cni: what a pod network costs the process provider per pod: the network namespace and CNI ADD
// (bridge, portmap, loopback) before the sandbox starts, and CNI DEL with the netns removal when
// the pod goes, timed around the provider's own NodeNetwork for N pods one after the other
// (p50/p99 in ms), then the same N at once (wall time). Needs root, the CNI plugins and nft.
//
//   npm run bench -- cni [--pods 50]
import { spawnSync } from 'node:child_process';
import { randomInt, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { silentLogger } from '../src/log.js';
import {
  CNI_BIN_DIRS,
  NodeNetwork,
  findCniBinDir,
  parseCidr,
  routeConflict,
} from '../src/providers/process/network.js';
import { fixed, percentile, say, table } from './util.js';

function freeCidr(): string {
  for (let i = 0; i < 100; i++) {
    const text = `10.${String(randomInt(200, 240))}.${String(randomInt(0, 256))}.0/24`;
    if (routeConflict(parseCidr(text, 'bench pod CIDR'), '') === undefined) return text;
  }
  throw new Error('no free /24 in 10.200.0.0/13');
}

export async function cni(argv: string[]): Promise<number> {
  const at = argv.indexOf('--pods');
  const pods = at >= 0 ? Number(argv[at + 1]) : 50;
  if (!Number.isInteger(pods) || pods < 1 || pods > 250) {
    say('--pods must be an integer from 1 to 250 (a /24 pod CIDR)');
    return 2;
  }
  if (process.getuid?.() !== 0) {
    say('cni: needs root (network namespaces, a bridge, nftables)');
    return 1;
  }
  const binDir = findCniBinDir(CNI_BIN_DIRS);
  if (binDir === undefined) {
    say(`cni: no CNI plugins in ${CNI_BIN_DIRS.join(' or ')}`);
    return 1;
  }
  const nodeName = `bench-cni-${randomUUID().slice(0, 8)}`;
  const dir = mkdtempSync('/var/tmp/vk-bench-cni-');
  const cidr = freeCidr();
  const network = new NodeNetwork({
    nodeName,
    podCidr: parseCidr(cidr, 'pod CIDR'),
    serviceCidr: parseCidr('10.96.0.0/16', 'service CIDR'),
    binDir,
    dir,
    log: silentLogger,
  });
  const uids = Array.from({ length: pods }, () => randomUUID());
  try {
    network.setUp();
    // The first ADD also makes the bridge: timed apart.
    const warm = randomUUID();
    let t0 = performance.now();
    await network.ensurePod(warm);
    const firstAdd = performance.now() - t0;
    await network.removePod(warm);
    const add: number[] = [];
    const del: number[] = [];
    for (const uid of uids) {
      t0 = performance.now();
      await network.ensurePod(uid);
      add.push(performance.now() - t0);
    }
    for (const uid of uids) {
      t0 = performance.now();
      await network.removePod(uid);
      del.push(performance.now() - t0);
    }
    const both = add.map((a, i) => a + (del[i] ?? 0));
    t0 = performance.now();
    await Promise.all(uids.map((uid) => network.ensurePod(uid)));
    const parallelAdd = performance.now() - t0;
    t0 = performance.now();
    await Promise.all(uids.map((uid) => network.removePod(uid)));
    const parallelDel = performance.now() - t0;
    const row = (name: string, xs: number[]): string[] => [
      name,
      fixed(percentile(xs, 50)),
      fixed(percentile(xs, 99)),
      fixed(Math.max(...xs)),
    ];
    process.stdout.write(
      `cni: ${String(pods)} pods one after the other (netns + ADD of bridge, portmap, loopback; DEL in reverse + netns removal), plugins in ${binDir}\n` +
        `${table([
          ['ms', 'p50', 'p99', 'max'],
          row('ADD', add),
          row('DEL', del),
          row('ADD+DEL', both),
        ])}\n` +
        `first ADD (makes the bridge): ${fixed(firstAdd)} ms; ${String(pods)} at once: ADD ${fixed(parallelAdd)} ms, DEL ${fixed(parallelDel)} ms (wall)\n`,
    );
    return 0;
  } finally {
    for (const uid of uids) await network.removePod(uid).catch(() => undefined);
    network.tearDown();
    spawnSync('ip', ['link', 'del', network.bridge], { stdio: 'ignore' });
    spawnSync('nft', ['delete', 'table', 'inet', network.nftTable], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
}
