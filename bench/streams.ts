// Scenario `streams`: MiB/s of `kubectl exec -i ... -- cat` (stdin in, stdout back) and of
// `kubectl port-forward` (bytes both ways), through the API server, mock provider, in-process
// virtual node. Starts its own dev cluster and prints medians of several runs.
//
//   npm run bench -- streams [--runs 5] [--mib 100]
import { KubeConfig } from '@kubernetes/client-node';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { allowAll } from '../src/api/auth.js';
import { DevCluster, ensureBinaries, issueCert } from '../src/devcluster/index.js';
import { KubeClient } from '../src/kube/client.js';
import { MockProvider } from '../src/providers/mock/index.js';
import { VirtualNode } from '../src/virtual-node.js';
import { median, say } from './util.js';

export async function streams(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { runs: { type: 'string', default: '5' }, mib: { type: 'string', default: '100' } },
  });
  const runs = Number(values.runs);
  const mib = Number(values.mib);
  const binaries = await ensureBinaries({ progress: say });
  const dir = await mkdtemp(join(tmpdir(), 'vk-bench-'));
  const cluster = new DevCluster({ dir, binaries, log: say });
  const stop = new AbortController();
  try {
    const info = await cluster.start();
    const kc = new KubeConfig();
    kc.loadFromFile(info.adminKubeconfig);
    const client = await KubeClient.create(kc);
    const nodeName = 'vk-bench';
    await issueCert(info.pkiDir, {
      name: 'serving-bench',
      cn: `system:node:${nodeName}`,
      organizations: ['system:nodes'],
      usage: 'server',
      sans: ['IP:127.0.0.1'],
    });
    const provider = new MockProvider({ nodeName, config: { logIntervalMs: 0 } });
    const node = new VirtualNode({
      client,
      nodeName,
      provider,
      api: {
        cert: await readFile(join(info.pkiDir, 'serving-bench.crt')),
        key: await readFile(join(info.pkiDir, 'serving-bench.key')),
        port: 0,
        host: '127.0.0.1',
        authorizer: allowAll,
      },
    });
    const running = node.run(stop.signal);
    await node.whenReady();
    const kubectl = (args: string[], input?: Buffer): Promise<{ code: number; bytes: number }> =>
      new Promise((resolve) => {
        const child = spawn(binaries.kubectl, args, {
          env: { ...process.env, KUBECONFIG: info.adminKubeconfig },
        });
        let bytes = 0;
        child.stdout.on('data', (d: Buffer) => (bytes += d.length));
        child.on('close', (code) => resolve({ code: code ?? -1, bytes }));
        child.stdin.end(input);
      });
    // Pods are refused until the controller manager has made the default service account.
    while (!(await client.get('/api/v1/namespaces/default/serviceaccounts/default'))) {
      await new Promise((r) => setTimeout(r, 100));
    }
    await client.create('/api/v1/namespaces/default/pods', {
      metadata: { name: 'bench' },
      spec: { nodeName, containers: [{ name: 'app', image: 'busybox' }] },
    });
    for (;;) {
      const pod = await client.get<{ status?: { phase?: string } }>(
        '/api/v1/namespaces/default/pods/bench',
      );
      if (pod?.status?.phase === 'Running') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const data = randomBytes(mib * 1024 * 1024);

    const exec: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      const r = await kubectl(['exec', '-i', 'bench', '--', 'cat'], data);
      const s = (performance.now() - t0) / 1000;
      if (r.code !== 0 || r.bytes !== data.length)
        throw new Error(
          `exec run ${String(i)} failed (${String(r.code)}, ${String(r.bytes)} bytes)`,
        );
      exec.push(mib / s);
      say(`exec run ${String(i + 1)}: ${(mib / s).toFixed(1)} MiB/s`);
    }

    const pf = spawn(binaries.kubectl, ['port-forward', 'pod/bench', ':8080'], {
      env: { ...process.env, KUBECONFIG: info.adminKubeconfig },
    });
    const local = await new Promise<number>((resolve) => {
      let text = '';
      pf.stdout.on('data', (d: Buffer) => {
        text += d.toString();
        const m = /127\.0\.0\.1:(\d+)/.exec(text);
        if (m?.[1]) resolve(Number(m[1]));
      });
    });
    const forward: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve, reject) => {
        const socket = connect(local, '127.0.0.1');
        let n = 0;
        socket.on('data', (d: Buffer) => {
          n += d.length;
          if (n >= data.length) socket.end();
        });
        socket.on('close', () =>
          n >= data.length ? resolve() : reject(new Error(`only ${String(n)} bytes back`)),
        );
        socket.on('error', reject);
        socket.write(data);
      });
      const s = (performance.now() - t0) / 1000;
      forward.push(mib / s);
      say(`port-forward run ${String(i + 1)}: ${(mib / s).toFixed(1)} MiB/s each way`);
    }
    pf.kill();
    process.stdout.write(
      [
        `scenario streams, ${String(mib)} MiB, ${String(runs)} runs, through the API server with kubectl ${binaries.kubectl.includes('v1.37') ? 'v1.37.2' : ''}`,
        `  kubectl exec -i cat (stdin in, stdout back): median ${median(exec).toFixed(1)} MiB/s (min ${Math.min(...exec).toFixed(1)}, max ${Math.max(...exec).toFixed(1)})`,
        `  kubectl port-forward echo (each way):         median ${median(forward).toFixed(1)} MiB/s (min ${Math.min(...forward).toFixed(1)}, max ${Math.max(...forward).toFixed(1)})`,
        '',
      ].join('\n'),
    );
    stop.abort();
    await running;
    await provider.close();
    client.close();
  } finally {
    stop.abort();
    await cluster.stop();
    await rm(dir, { recursive: true, force: true });
  }
  return 0;
}
