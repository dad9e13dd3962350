// Scenarios `streams`, `exec` and `logs`: MiB/s through the API server, with kubectl, of
//   exec          `kubectl exec -i bench -- cat`: stdin in, stdout back (bytes each way)
//   logs          `kubectl logs bench` of a log of the same size
//   port-forward  `kubectl port-forward` to the mock's echo port (bytes each way; mock only)
// against our agent (bin/virtual-kubelet, its own process) with the mock provider or, with
// `--provider process`, the process provider (skipped with a clear line when the built CLI does
// not have it), or, with `--provider external`, the Go example provider over the provider protocol
// (exec and port-forward: against the mock, what the protocol costs). `exec` and `logs` are
// `streams --only exec` and `streams --only logs`.
//
//   npm run bench -- streams [--only exec,logs,port-forward] [--provider mock|process|external]
//                            [--mib 100] [--runs 5] [--json FILE]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { ensureBinaries } from '../src/devcluster/build.js';
import { gitCommit, teardownRun, waitGone, waitNodeReady, writeJson } from './common.js';
import { controlPlane, controlPlaneLine, machine, withHarness } from './harness.js';
import { cpuSeconds, peakRssBytes } from './proc.js';
import { type AgentHandle, cliRunHelp, ensureDist, helpProviders, Ours } from './systems.js';
import { fixed, medianOf, mib, say, table } from './util.js';
import { buildGoMock } from '../test/helpers/example-providers.js';

const KINDS = ['exec', 'logs', 'port-forward'] as const;
type StreamKind = (typeof KINDS)[number];

const MIB = 1024 * 1024;

/** One transfer. */
export interface StreamRun {
  readonly run: number;
  /** Bytes received (each way for exec and port-forward). */
  readonly bytes: number;
  readonly seconds: number;
  readonly mibPerSecond: number;
  /** Agent CPU (user + system) during the transfer. */
  readonly cpuSeconds?: number;
  /** Agent VmHWM after the transfer. */
  readonly peakRssBytes?: number;
}

export interface StreamResult {
  readonly settings: string;
  /** Medians of the runs; peakRssBytes is the highest. */
  readonly seconds?: number;
  readonly mibPerSecond?: number;
  readonly minMibPerSecond?: number;
  readonly maxMibPerSecond?: number;
  readonly cpuSeconds?: number;
  readonly peakRssBytes?: number;
  readonly runs: StreamRun[];
}

export function streamFigures(
  run: number,
  bytes: number,
  seconds: number,
  cpu?: number,
  peak?: number,
): StreamRun {
  return {
    run,
    bytes,
    seconds,
    mibPerSecond: bytes / MIB / seconds,
    ...(cpu === undefined ? {} : { cpuSeconds: cpu }),
    ...(peak === undefined ? {} : { peakRssBytes: peak }),
  };
}

export function summarizeStreams(settings: string, runs: StreamRun[]): StreamResult {
  const rates = runs.map((r) => r.mibPerSecond);
  const peaks = runs.map((r) => r.peakRssBytes).filter((x): x is number => x !== undefined);
  return {
    settings,
    seconds: medianOf(runs.map((r) => r.seconds)),
    mibPerSecond: medianOf(rates),
    minMibPerSecond: rates.length > 0 ? Math.min(...rates) : undefined,
    maxMibPerSecond: rates.length > 0 ? Math.max(...rates) : undefined,
    cpuSeconds: medianOf(runs.map((r) => r.cpuSeconds)),
    peakRssBytes: peaks.length > 0 ? Math.max(...peaks) : undefined,
    runs,
  };
}

// The process provider runs the pod's command: it writes the log (lines of 1 KiB) and an end
// marker, then sleeps; `cat` is the real one. The mock ignores the command (its log is
// `logFillBytes` of filler and its exec has a built-in `cat`).
const LINE = 'x'.repeat(1023);
const END = 'vk-bench-log-end';

function benchPod(nodeName: string, logBytes: number): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'bench' },
    spec: {
      nodeName,
      tolerations: [{ operator: 'Exists' }],
      containers: [
        {
          name: 'app',
          image: 'busybox',
          command: [
            'sh',
            '-c',
            `yes ${LINE} | head -c ${String(logBytes)}; echo ${END}; exec sleep 86400`,
          ],
        },
      ],
    },
  };
}

export async function streams(argv: string[], scenario = 'streams'): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      runs: { type: 'string', default: '5' },
      mib: { type: 'string', default: '100' },
      only: { type: 'string' },
      provider: { type: 'string', default: 'mock' },
      json: { type: 'string' },
    },
  });
  const runs = Number(values.runs);
  const size = Number(values.mib);
  const provider = values.provider;
  if (!(runs >= 1) || !(size > 0)) {
    say('--runs and --mib must be positive numbers');
    return 2;
  }
  const defaults: readonly StreamKind[] =
    provider === 'mock'
      ? KINDS
      : provider === 'external'
        ? KINDS.filter((k) => k !== 'logs')
        : KINDS.filter((k) => k !== 'port-forward');
  const kinds = values.only ? values.only.split(',').filter(Boolean) : [...defaults];
  const bad = kinds.filter((k) => !(KINDS as readonly string[]).includes(k));
  if (bad.length > 0 || kinds.length === 0) {
    say(`unknown stream(s) ${bad.join(', ')}: choose from ${KINDS.join(', ')}`);
    return 2;
  }
  await ensureDist(say);
  const known = helpProviders(await cliRunHelp());
  if (!known.includes(provider)) {
    process.stdout.write(
      `ours: skipped: this build has no provider '${provider}' (it has ${known.join(', ') || 'none'})\n`,
    );
    return 0;
  }
  const bytes = Math.round(size * MIB);
  // The process provider rotates a container's log at 10 MiB by default, and `kubectl logs`
  // reads the current file only: room for the whole log; its state stays in the run's directory.
  const goMock = provider === 'external' ? await buildGoMock() : '';
  const system = new Ours(0, {
    provider,
    mockConfig: { logFillBytes: bytes },
    ...(provider === 'external'
      ? {
          providerConfig: () => ({
            command: [goMock],
            env: { VK_MOCK_LOG_INTERVAL_MS: '0' },
          }),
        }
      : {}),
    ...(provider === 'process'
      ? {
          providerConfig: (dir: string) => ({
            stateDir: dir,
            maxLogBytes: 2 * bytes + MIB,
            // exec and logs only: what a pod network would add is not measured here.
            network: 'host',
          }),
        }
      : {}),
  });
  const binaries = await ensureBinaries({ progress: say });
  const results = new Map<StreamKind, StreamResult>();
  const outcome = { failed: false };
  await withHarness(
    [],
    { smoke: false, podCapacity: 110, concurrency: 8, name: scenario },
    async ({ ctx, signal, keepLogs }) => {
      const { client, info } = ctx;
      const nodeName = 'vk-bench-streams';
      let agent: AgentHandle | undefined;
      const namespace = `streams-${randomBytes(3).toString('hex')}`;
      try {
        await client.create('/api/v1/namespaces', { metadata: { name: namespace } });
        agent = await system.start(ctx, nodeName);
        const live = agent;
        await waitNodeReady(client, nodeName, agent, 120_000, signal);
        while (
          !(await client.get(`/api/v1/namespaces/${namespace}/serviceaccounts/default`, signal))
        )
          await delay(100, undefined, { signal });
        await client.create(`/api/v1/namespaces/${namespace}/pods`, benchPod(nodeName, bytes));
        const deadline = performance.now() + 120_000;
        for (;;) {
          const pod = await client.get<{ status?: { phase?: string } }>(
            `/api/v1/namespaces/${namespace}/pods/bench`,
            signal,
          );
          if (pod?.status?.phase === 'Running') break;
          if (performance.now() > deadline)
            throw new Error(`pod bench not Running after 120 s (${pod?.status?.phase ?? '?'})`);
          await delay(100, undefined, { signal });
        }
        const env = { ...process.env, KUBECONFIG: info.adminKubeconfig };
        const kubectl = (
          args: string[],
          input?: Buffer,
        ): Promise<{ code: number; bytes: number; tail: string; stderr: string }> =>
          new Promise((resolve) => {
            const child = spawn(binaries.kubectl, ['-n', namespace, ...args], { env });
            let received = 0;
            let tail = '';
            let stderr = '';
            child.stdout.on('data', (d: Buffer) => {
              received += d.length;
              tail = (tail + d.subarray(-64).toString()).slice(-64);
            });
            child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
            const stop = (): boolean => child.kill();
            signal.addEventListener('abort', stop, { once: true });
            child.on('close', (code) => {
              signal.removeEventListener('abort', stop);
              resolve({ code: code ?? -1, bytes: received, tail, stderr });
            });
            child.stdin.on('error', () => undefined);
            child.stdin.end(input);
          });
        const measure = async (
          kind: StreamKind,
          transfer: () => Promise<number>,
        ): Promise<void> => {
          const list: StreamRun[] = [];
          for (let i = 1; i <= runs; i++) {
            signal.throwIfAborted();
            const cpu0 = live.pid === undefined ? undefined : cpuSeconds(live.pid);
            const t0 = performance.now();
            const got = await transfer();
            const s = (performance.now() - t0) / 1000;
            const cpu1 = live.pid === undefined ? undefined : cpuSeconds(live.pid);
            const r = streamFigures(
              i,
              got,
              s,
              cpu0 === undefined || cpu1 === undefined ? undefined : cpu1 - cpu0,
              live.pid === undefined ? undefined : peakRssBytes(live.pid),
            );
            list.push(r);
            say(
              `${kind} run ${String(i)}: ${fixed(r.mibPerSecond, 1)} MiB/s (${fixed(s, 2)} s, agent CPU ${fixed(r.cpuSeconds, 2)} s)`,
            );
          }
          results.set(kind, summarizeStreams(system.settings(), list));
        };

        for (const kind of kinds as StreamKind[]) {
          if (kind === 'exec') {
            const data = randomBytes(bytes);
            await measure('exec', async () => {
              const r = await kubectl(['exec', '-i', 'bench', '--', 'cat'], data);
              if (r.code !== 0 || r.bytes !== data.length)
                throw new Error(
                  `exec failed (exit ${String(r.code)}, ${String(r.bytes)} of ${String(data.length)} bytes back): ${r.stderr.trim()}`,
                );
              return r.bytes;
            });
          } else if (kind === 'logs') {
            if (provider !== 'mock') {
              // The container writes its log itself: wait for the end marker.
              const until = performance.now() + 300_000;
              while (!(await kubectl(['logs', 'bench', '--tail', '1'])).tail.includes(END)) {
                if (performance.now() > until)
                  throw new Error(`the container's ${String(size)} MiB log did not end in 300 s`);
                await delay(500, undefined, { signal });
              }
            }
            await measure('logs', async () => {
              const r = await kubectl(['logs', 'bench']);
              if (r.code !== 0 || r.bytes < bytes)
                throw new Error(
                  `logs failed (exit ${String(r.code)}, ${String(r.bytes)} of at least ${String(bytes)} bytes): ${r.stderr.trim()}`,
                );
              return r.bytes;
            });
          } else {
            const data = randomBytes(bytes);
            const pf = spawn(
              binaries.kubectl,
              ['-n', namespace, 'port-forward', 'pod/bench', ':8080'],
              {
                env,
              },
            );
            try {
              const local = await new Promise<number>((resolve, reject) => {
                let text = '';
                pf.stdout.on('data', (d: Buffer) => {
                  text += d.toString();
                  const m = /127\.0\.0\.1:(\d+)/.exec(text);
                  if (m?.[1]) resolve(Number(m[1]));
                });
                pf.once('exit', () => reject(new Error('kubectl port-forward exited')));
              });
              await measure(
                'port-forward',
                () =>
                  new Promise<number>((resolve, reject) => {
                    const socket = connect(local, '127.0.0.1');
                    let n = 0;
                    socket.on('data', (d: Buffer) => {
                      n += d.length;
                      if (n >= data.length) socket.end();
                    });
                    socket.on('close', () =>
                      n >= data.length
                        ? resolve(n)
                        : reject(new Error(`port-forward: only ${String(n)} bytes back`)),
                    );
                    socket.on('error', reject);
                    socket.write(data);
                  }),
              );
            } finally {
              pf.kill();
            }
          }
        }
      } catch (err) {
        if (signal.aborted) throw err;
        outcome.failed = true;
        keepLogs();
        const tail = agent ? `; agent log ${agent.logPath}` : '';
        say(`FAILED: ${err instanceof Error ? err.message : String(err)}${tail}`);
      } finally {
        // The pod goes while the agent runs: a provider with real processes (process) stops
        // them then; they outlive the agent by design.
        if (agent && !agent.exited()) {
          await client.delete(`/api/v1/namespaces/${namespace}/pods/bench`).catch(() => undefined);
          await waitGone(client, `/api/v1/namespaces/${namespace}/pods/bench`, 60_000);
        }
        await teardownRun(client, agent, namespace, nodeName, signal);
      }
    },
  );

  const rows: string[][] = [
    ['stream', 'runs', 'MiB/s', 'min', 'max', 'seconds', 'agent CPU s', 'peak RSS'],
  ];
  for (const [kind, r] of results)
    rows.push([
      kind,
      String(r.runs.length),
      fixed(r.mibPerSecond, 1),
      fixed(r.minMibPerSecond, 1),
      fixed(r.maxMibPerSecond, 1),
      fixed(r.seconds, 2),
      fixed(r.cpuSeconds, 2),
      mib(r.peakRssBytes),
    ]);
  process.stdout.write(
    [
      `scenario ${scenario}, ${String(size)} MiB per transfer, ${String(runs)} run(s), ours with --provider ${provider}, through the API server with kubectl (exec and port-forward: MiB/s each way); medians`,
      controlPlaneLine(),
      '',
      table(rows),
      '',
      `settings: ${system.settings()}`,
      '',
    ].join('\n'),
  );
  if (results.size > 0) {
    const suffix = provider === 'mock' ? '' : `-${provider}`;
    const jsonPath =
      values.json ??
      `bench/results/${new Date().toISOString().slice(0, 10)}-${scenario}${suffix}.json`;
    const single = kinds.length === 1 ? results.get(kinds[0] as StreamKind) : undefined;
    const all = [...results.values()];
    const ours = single ?? {
      settings: system.settings(),
      seconds: all.reduce((a, r) => a + (r.seconds ?? 0), 0),
      cpuSeconds: all.reduce((a, r) => a + (r.cpuSeconds ?? 0), 0),
      peakRssBytes: Math.max(...all.map((r) => r.peakRssBytes ?? 0)),
      runs,
      streams: Object.fromEntries(results),
    };
    await writeJson(jsonPath, {
      scenario,
      n: size,
      unit: 'MiB per transfer',
      provider,
      date: new Date().toISOString(),
      machine: machine(),
      controlPlane,
      commit: await gitCommit(),
      systems: { ours },
    });
    say(`wrote ${jsonPath}`);
  }
  return outcome.failed ? 1 : 0;
}

export const exec = (argv: string[]): Promise<number> =>
  streams([...argv, '--only', 'exec'], 'exec');

export const logs = (argv: string[]): Promise<number> =>
  streams([...argv, '--only', 'logs'], 'logs');
