// Scenario `protocol`: what the provider protocol costs, without the API server or kubectl in
// the way. `exec -i cat` of N MiB (stdin in, stdout back) and a round of create + get + delete
// of N pods, each against
//   in-process  the mock provider, called directly
//   ts-server   the mock served over the protocol (ProviderServer) on a unix socket, in process
//   go-mock     examples/providers/go-mock, its own process, over a unix socket
// The agent side is ExternalProvider in every protocol case.
//
//   npm run bench -- protocol [--mib 64] [--pods 200] [--runs 3]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import type { Provider } from '../src/provider.js';
import { MockProvider } from '../src/providers/mock/index.js';
import {
  ExternalProvider,
  ProviderServer,
  startExternalProvider,
} from '../src/providers/external/index.js';
import { buildGoMock } from '../test/helpers/example-providers.js';
import { fixed, medianOf, say, table } from './util.js';

const MIB = 1024 * 1024;
const never = new AbortController().signal;

interface Subject {
  readonly name: string;
  readonly provider: Provider;
  close(): Promise<void>;
}

const pod = (name: string) => ({
  metadata: { namespace: 'bench', name, uid: `uid-${name}` },
  spec: { containers: [{ name: 'main', image: 'busybox' }] },
});

async function execMiBps(p: Provider, bytes: number): Promise<number> {
  const data = Buffer.alloc(bytes, 7);
  const chunks: Buffer[] = [];
  for (let i = 0; i < bytes; i += 64 * 1024) chunks.push(data.subarray(i, i + 64 * 1024));
  const stdout = new PassThrough();
  let got = 0;
  stdout.on('data', (d: Buffer) => (got += d.length));
  const t0 = performance.now();
  const code = await p.runInContainer?.(
    'bench',
    'exec',
    'main',
    ['cat'],
    { tty: false, stdin: Readable.from(chunks), stdout },
    never,
  );
  const seconds = (performance.now() - t0) / 1000;
  if (code !== 0 || got !== bytes)
    throw new Error(`exec: exit ${String(code)}, ${String(got)} of ${String(bytes)} bytes`);
  return bytes / MIB / seconds;
}

async function lifecyclePerSecond(p: Provider, n: number, run: number): Promise<number> {
  const t0 = performance.now();
  const pods = Array.from({ length: n }, (_, i) => pod(`p${String(run)}-${String(i)}`));
  await Promise.all(pods.map((x) => p.createPod(x, never)));
  await Promise.all(pods.map((x) => p.getPodStatus('bench', x.metadata.name, never)));
  await Promise.all(pods.map((x) => p.deletePod(x, never)));
  return n / ((performance.now() - t0) / 1000);
}

export async function protocol(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      mib: { type: 'string', default: '64' },
      pods: { type: 'string', default: '200' },
      runs: { type: 'string', default: '3' },
    },
  });
  const bytes = Math.round(Number(values.mib) * MIB);
  const n = Number(values.pods);
  const runs = Number(values.runs);
  const dir = mkdtempSync(join(tmpdir(), 'vk-bench-protocol-'));
  const goMock = await buildGoMock();
  const subjects: (() => Promise<Subject>)[] = [
    () => {
      const mock = new MockProvider({ nodeName: 'bench', config: { logIntervalMs: 0 } });
      return Promise.resolve({ name: 'in-process', provider: mock, close: () => mock.close() });
    },
    async () => {
      const mock = new MockProvider({ nodeName: 'bench', config: { logIntervalMs: 0 } });
      const server = new ProviderServer({ provider: mock });
      const address = `unix://${join(dir, 'ts.sock')}`;
      await server.listen(address);
      const client = await ExternalProvider.connect(
        { nodeName: 'bench', address },
        AbortSignal.timeout(10_000),
      );
      return {
        name: 'ts-server',
        provider: client,
        close: async () => {
          await client.close(never);
          server.close();
          await mock.close();
        },
      };
    },
    async () => {
      const client = await startExternalProvider({
        nodeName: 'bench',
        config: { command: [goMock], env: { VK_MOCK_LOG_INTERVAL_MS: '0' } },
      });
      return {
        name: 'go-mock',
        provider: client,
        close: () => client.close(AbortSignal.timeout(10_000)),
      };
    },
  ];
  const rows: string[][] = [];
  let base: { exec: number; life: number } | undefined;
  try {
    for (const make of subjects) {
      const s = await make();
      try {
        await s.provider.createPod(pod('exec'), never);
        const exec: number[] = [];
        const life: number[] = [];
        for (let run = 0; run < runs; run++) {
          exec.push(await execMiBps(s.provider, bytes));
          life.push(await lifecyclePerSecond(s.provider, n, run));
        }
        const e = medianOf(exec) ?? 0;
        const l = medianOf(life) ?? 0;
        base ??= { exec: e, life: l };
        rows.push([
          s.name,
          fixed(e, 1),
          fixed(e / base.exec, 2),
          fixed(l, 0),
          fixed(l / base.life, 2),
        ]);
      } finally {
        await s.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  say(
    `scenario protocol: exec -i cat of ${values.mib} MiB, ${String(n)} pods created, read and deleted at once; medians of ${String(runs)} run(s)`,
  );
  process.stdout.write(
    table([
      ['subject', 'exec MiB/s', 'vs in-process', 'pods/s (create+get+delete)', 'vs in-process'],
      ...rows,
    ]) + '\n',
  );
  return 0;
}
