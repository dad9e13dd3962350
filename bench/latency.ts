// Scenario `latency`: pods created at a steady rate (default 50/s for 60 s) on one agent's node;
// per pod, the time from the create request being sent to the watch event that shows it Running,
// both taken by the harness's clock (a pod's creationTimestamp has whole seconds only).
// Percentiles p50/p90/p99 per run, medians over runs; for each run, each system in turn
// (A B C A B C), with a fresh namespace, node and agent process.
//
//   npm run bench -- latency [--rate 50] [--duration 60] [--runs 3]
//                            [--systems ours,kwok,go-vk,limit] [--json FILE] [--smoke]
//   npm run bench -- latency --provider process [--process-network cni|host|both] [--rate 5]
import { randomBytes } from 'node:crypto';
import { loadavg } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import {
  gitCommit,
  PodTracker,
  podBody,
  teardownRun,
  waitNodeReady,
  withRetries,
  writeJson,
} from './common.js';
import {
  controlPlane,
  controlPlaneLine,
  machine,
  parseSystems,
  resolveSystemNames,
  withHarness,
} from './harness.js';
import { networkCost, networkCostTable } from './network-cost.js';
import { cpuSeconds, peakRssBytes } from './proc.js';
import {
  type AgentHandle,
  type BenchContext,
  type BenchSystem,
  logTail,
  type SystemName,
} from './systems.js';
import { fixed, medianOf, mib, percentile, ratio, ratioText, say, table } from './util.js';

/** The p99 the issue asks for at 50 pods/s. */
export const TARGET_P99_MS = 1000;

export interface LatencyRun {
  readonly run: number;
  readonly ok: boolean;
  readonly error?: string;
  /** Pods created (each create sent once; retries count from the first send). */
  readonly pods: number;
  /** Pods observed Running. */
  readonly running: number;
  /** Create sent to Running observed, per pod. */
  readonly p50Ms?: number;
  readonly p90Ms?: number;
  readonly p99Ms?: number;
  readonly maxMs?: number;
  /** The create request's round trip (sent to answered), p99: how precise the start time is. */
  readonly createP99Ms?: number;
  /** Creates per second the harness achieved (first to last send). */
  readonly achievedRate?: number;
  /** First create sent to the last pod Running. */
  readonly seconds?: number;
  /** Agent CPU (user + system) over the same span. */
  readonly cpuSeconds?: number;
  /** Agent VmHWM at the end of the run. */
  readonly peakRssBytes?: number;
  /** kube-apiserver CPU over the same span. */
  readonly apiserverCpuSeconds?: number;
  readonly loadAverage?: number;
  readonly commit?: string;
}

export interface LatencyResult {
  readonly settings: string;
  readonly seconds?: number;
  readonly cpuSeconds?: number;
  readonly peakRssBytes?: number;
  readonly p50Ms?: number;
  readonly p90Ms?: number;
  readonly p99Ms?: number;
  readonly maxMs?: number;
  readonly createP99Ms?: number;
  readonly achievedRate?: number;
  readonly apiserverCpuSeconds?: number;
  readonly runs: LatencyRun[];
}

/** Latency percentiles of one run, in milliseconds. */
export function latencyFigures(
  latencies: readonly number[],
): Pick<LatencyRun, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'maxMs'> {
  return {
    p50Ms: percentile(latencies, 50),
    p90Ms: percentile(latencies, 90),
    p99Ms: percentile(latencies, 99),
    maxMs: latencies.reduce((a, b) => Math.max(a, b), 0),
  };
}

/** Medians over the runs that completed. */
export function summarizeLatency(settings: string, runs: LatencyRun[]): LatencyResult {
  const ok = runs.filter((r) => r.ok);
  const m = (k: keyof LatencyRun): number | undefined =>
    medianOf(ok.map((r) => r[k] as number | undefined));
  return {
    settings,
    seconds: m('seconds'),
    cpuSeconds: m('cpuSeconds'),
    peakRssBytes: m('peakRssBytes'),
    p50Ms: m('p50Ms'),
    p90Ms: m('p90Ms'),
    p99Ms: m('p99Ms'),
    maxMs: m('maxMs'),
    createP99Ms: m('createP99Ms'),
    achievedRate: m('achievedRate'),
    apiserverCpuSeconds: m('apiserverCpuSeconds'),
    runs,
  };
}

const PEERS = ['go-vk', 'go-vk-tuned', 'kwok', 'limit'] as const;

/** `ours/<peer>` ratios of the medians (below 1: ours is faster or smaller). */
export function latencyRatios(
  results: Partial<Record<SystemName, LatencyResult>>,
): Record<string, Record<string, number | undefined>> {
  const out: Record<string, Record<string, number | undefined>> = {};
  const ours = results.ours;
  if (!ours) return out;
  for (const peer of PEERS) {
    const p = results[peer];
    if (!p) continue;
    out[`ours/${peer}`] = {
      p50Ms: ratio(ours.p50Ms, p.p50Ms),
      p90Ms: ratio(ours.p90Ms, p.p90Ms),
      p99Ms: ratio(ours.p99Ms, p.p99Ms),
      cpuSeconds: ratio(ours.cpuSeconds, p.cpuSeconds),
      peakRssBytes: ratio(ours.peakRssBytes, p.peakRssBytes),
    };
  }
  return out;
}

export function latencyReport(
  rate: number,
  durationSeconds: number,
  runsRequested: number,
  results: Partial<Record<SystemName, LatencyResult>>,
): string {
  const rows: string[][] = [
    [
      'system',
      'ok',
      'p50 ms',
      'p90 ms',
      'p99 ms',
      'max ms',
      'create p99 ms',
      'rate/s',
      'CPU s',
      'peak RSS',
      'apiserver CPU s',
      `p99 <= ${String(TARGET_P99_MS)} ms`,
    ],
  ];
  for (const [name, r] of Object.entries(results)) {
    rows.push([
      name,
      `${String(r.runs.filter((x) => x.ok).length)}/${String(r.runs.length)}`,
      fixed(r.p50Ms, 0),
      fixed(r.p90Ms, 0),
      fixed(r.p99Ms, 0),
      fixed(r.maxMs, 0),
      fixed(r.createP99Ms, 0),
      fixed(r.achievedRate, 1),
      ratioText(r.cpuSeconds),
      mib(r.peakRssBytes),
      fixed(r.apiserverCpuSeconds, 1),
      r.p99Ms === undefined ? '-' : r.p99Ms <= TARGET_P99_MS ? 'yes' : 'NO',
    ]);
  }
  const cni = results['ours-process-cni'];
  const host = results['ours-process-host'];
  const out = [
    `scenario latency, ${String(rate)} pods/s for ${String(durationSeconds)} s (${String(Math.round(rate * durationSeconds))} pods), ${String(runsRequested)} run(s) per system, interleaved; medians of the runs that completed`,
    'latency: create request sent to the watch event showing the pod Running, by the harness clock',
    controlPlaneLine(),
    '',
    table(rows),
    '',
  ];
  const ratioRows: string[][] = [['ratio', 'p50', 'p90', 'p99', 'CPU s', 'peak RSS']];
  for (const [name, r] of Object.entries(latencyRatios(results)))
    ratioRows.push([
      name,
      ratioText(r.p50Ms),
      ratioText(r.p90Ms),
      ratioText(r.p99Ms),
      ratioText(r.cpuSeconds),
      ratioText(r.peakRssBytes),
    ]);
  if (ratioRows.length > 1) out.push(table(ratioRows), '');
  if (cni && host)
    out.push(
      'the process provider with its pod network (cni) and without it (host); seconds: first create to last Running',
      networkCostTable(cni, host),
      '',
    );
  out.push('settings:');
  for (const [name, r] of Object.entries(results)) out.push(`  ${name}: ${r.settings}`);
  for (const [name, r] of Object.entries(results))
    for (const run of r.runs)
      if (!run.ok) out.push(`FAILED ${name} run ${String(run.run)}: ${run.error ?? ''}`);
  return `${out.join('\n')}\n`;
}

interface LatencySettings {
  readonly rate: number;
  readonly durationSeconds: number;
  /** How long after the last create every pod must be Running. */
  readonly graceMs: number;
}

async function oneRun(
  ctx: BenchContext,
  system: BenchSystem,
  run: number,
  settings: LatencySettings,
  signal: AbortSignal,
): Promise<LatencyRun> {
  const { client } = ctx;
  const total = Math.max(1, Math.round(settings.rate * settings.durationSeconds));
  const suffix = randomBytes(3).toString('hex');
  const loadAverage = loadavg()[0];
  const commit = await gitCommit();
  const namespace = `latency-${system.name}-${String(run)}-${suffix}`;
  const nodeName = `bench-${system.name}-${String(run)}-${suffix}`;
  await client.create('/api/v1/namespaces', {
    metadata: { name: namespace, labels: { 'vk-bench': 'latency' } },
  });
  while (!(await client.get(`/api/v1/namespaces/${namespace}/serviceaccounts/default`, signal)))
    await delay(100, undefined, { signal });
  const tracker = new PodTracker(client, namespace);
  const names = Array.from({ length: total }, (_, i) => `pod-${String(i).padStart(5, '0')}`);
  const sentAt: number[] = [];
  const answeredAt: number[] = [];
  let agent: AgentHandle | undefined;
  const cpu = (pid: number | undefined): number | undefined =>
    pid === undefined ? undefined : cpuSeconds(pid);
  try {
    agent = await system.start(ctx, nodeName);
    const live = agent;
    await waitNodeReady(client, nodeName, agent, 120_000, signal);
    await tracker.start();
    const cpu0 = cpu(agent.pid);
    const api0 = cpu(ctx.info.pids['kube-apiserver']);
    const t0 = performance.now();
    const intervalMs = 1000 / settings.rate;
    // Open loop: each create is sent at its time whether or not earlier ones were answered.
    const creates: Promise<void>[] = [];
    let createError: Error | undefined;
    for (let i = 0; i < total; i++) {
      const wait = t0 + i * intervalMs - performance.now();
      if (wait > 1) await delay(wait, undefined, { signal });
      signal.throwIfAborted();
      if (createError !== undefined) break;
      sentAt[i] = performance.now();
      creates.push(
        withRetries(
          () =>
            client.create(
              `/api/v1/namespaces/${namespace}/pods`,
              podBody(names[i] ?? '', nodeName, 'latency'),
              signal,
            ),
          signal,
        ).then(
          () => {
            answeredAt[i] = performance.now();
          },
          (err: unknown) => {
            createError ??= err instanceof Error ? err : new Error(String(err));
          },
        ),
      );
    }
    await Promise.all(creates);
    if (createError !== undefined) throw createError;
    const lastSent = sentAt[total - 1] ?? t0;
    try {
      await tracker.until(
        () => tracker.running >= total,
        settings.graceMs,
        signal,
        () => {
          const exit = live.exited();
          if (exit) throw new Error(`the agent ${exit}`);
        },
      );
    } catch (err) {
      if (signal.aborted) throw err;
      throw new Error(
        `only ${String(tracker.running)} of ${String(total)} pods Running ${fixed((performance.now() - lastSent) / 1000)} s after the last create (${err instanceof Error ? err.message : String(err)}; phases seen: ${tracker.phases()}); log ${live.logPath}:\n    ${await logTail(live.logPath)}`,
        { cause: err },
      );
    }
    const cpu1 = cpu(agent.pid);
    const api1 = cpu(ctx.info.pids['kube-apiserver']);
    const latencies: number[] = [];
    const roundTrips: number[] = [];
    let last = t0;
    names.forEach((name, i) => {
      const at = tracker.runningAt(name) ?? t0;
      last = Math.max(last, at);
      latencies.push(at - (sentAt[i] ?? t0));
      roundTrips.push((answeredAt[i] ?? t0) - (sentAt[i] ?? t0));
    });
    const diff = (a: number | undefined, b: number | undefined): number | undefined =>
      a === undefined || b === undefined ? undefined : b - a;
    return {
      run,
      ok: true,
      pods: total,
      running: tracker.running,
      ...latencyFigures(latencies),
      createP99Ms: percentile(roundTrips, 99),
      achievedRate: total > 1 ? ((total - 1) * 1000) / (lastSent - (sentAt[0] ?? t0)) : undefined,
      seconds: (last - t0) / 1000,
      cpuSeconds: diff(cpu0, cpu1),
      peakRssBytes: agent.pid === undefined ? undefined : peakRssBytes(agent.pid),
      apiserverCpuSeconds: diff(api0, api1),
      loadAverage,
      commit,
    };
  } catch (err) {
    if (signal.aborted) throw err;
    return {
      run,
      ok: false,
      error: err instanceof Error ? err.message : String(err),
      pods: sentAt.length,
      running: tracker.running,
      loadAverage,
      commit,
    };
  } finally {
    await tracker.stop();
    await teardownRun(client, agent, namespace, nodeName, signal);
  }
}

export async function latency(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      rate: { type: 'string', default: '50' },
      duration: { type: 'string', default: '60' },
      runs: { type: 'string', default: '3' },
      systems: { type: 'string' },
      provider: { type: 'string' },
      'process-network': { type: 'string' },
      json: { type: 'string' },
      smoke: { type: 'boolean', default: false },
      grace: { type: 'string', default: '60' },
      'pod-capacity': { type: 'string' },
      'go-vk-tuned-workers': { type: 'string', default: '64' },
      'limit-concurrency': { type: 'string', default: '64' },
      'ours-log-interval-ms': { type: 'string', default: '0' },
    },
  });
  const rate = Number(values.rate);
  const durationSeconds = Number(values.duration);
  const runs = Number(values.runs);
  const graceSeconds = Number(values.grace);
  if (!(rate > 0) || !(durationSeconds > 0) || !(runs >= 1) || !(graceSeconds > 0)) {
    say('--rate, --duration, --runs and --grace must be positive numbers');
    return 2;
  }
  const total = Math.round(rate * durationSeconds);
  const names = resolveSystemNames(
    {
      systems: values.systems,
      provider: values.provider,
      processNetwork: values['process-network'],
    },
    'ours,kwok,go-vk,limit',
    total,
  );
  if (typeof names === 'string') {
    say(names);
    return 2;
  }
  const systems = parseSystems(names, {
    goVkTunedWorkers: Number(values['go-vk-tuned-workers']),
    limitConcurrency: Number(values['limit-concurrency']),
    oursLogIntervalMs: Number(values['ours-log-interval-ms']),
  });
  if (typeof systems === 'string') {
    say(systems);
    return 2;
  }
  const podCapacity = Number(values['pod-capacity'] ?? Math.max(20_000, total));
  const settings: LatencySettings = { rate, durationSeconds, graceMs: graceSeconds * 1000 };
  const outcome = { failed: false };
  const results: Partial<Record<SystemName, LatencyResult>> = {};
  await withHarness(
    systems,
    { smoke: values.smoke, podCapacity, concurrency: 64, name: 'latency' },
    async ({ ctx, systems: ready, skipped, signal, keepLogs }) => {
      const perSystem = new Map<SystemName, LatencyRun[]>(ready.map((s) => [s.name, []]));
      for (let run = 1; run <= runs; run++) {
        for (const system of ready) {
          say(
            `run ${String(run)}/${String(runs)}: ${system.name}, ${String(rate)} pods/s for ${String(durationSeconds)} s`,
          );
          const r = await oneRun(ctx, system, run, settings, signal);
          perSystem.get(system.name)?.push(r);
          if (r.ok)
            say(
              `  ${system.name}: p50 ${fixed(r.p50Ms, 0)} ms, p90 ${fixed(r.p90Ms, 0)} ms, p99 ${fixed(r.p99Ms, 0)} ms, max ${fixed(r.maxMs, 0)} ms (create round trip p99 ${fixed(r.createP99Ms, 0)} ms, ${fixed(r.achievedRate, 1)} creates/s), agent CPU ${fixed(r.cpuSeconds, 2)} s, peak RSS ${mib(r.peakRssBytes)}`,
            );
          else {
            outcome.failed = true;
            keepLogs();
            say(`  ${system.name} FAILED: ${r.error ?? ''}`);
          }
        }
      }
      for (const system of ready)
        results[system.name] = summarizeLatency(
          system.settings(),
          perSystem.get(system.name) ?? [],
        );
      process.stdout.write(latencyReport(rate, durationSeconds, runs, results));
      for (const line of skipped) process.stdout.write(`skipped ${line}\n`);
      const jsonPath =
        values.json ??
        (values.smoke
          ? undefined
          : `bench/results/${new Date().toISOString().slice(0, 10)}-latency${values.provider === 'process' ? '-process' : ''}.json`);
      if (jsonPath) {
        await writeJson(jsonPath, {
          scenario: 'latency',
          n: total,
          rate,
          durationSeconds,
          targetP99Ms: TARGET_P99_MS,
          date: new Date().toISOString(),
          runsRequested: runs,
          machine: machine(),
          controlPlane,
          commit: await gitCommit(),
          systems: results,
          ratios: latencyRatios(results),
          ...(results['ours-process-cni'] && results['ours-process-host']
            ? {
                podNetworkCost: networkCost(
                  results['ours-process-cni'],
                  results['ours-process-host'],
                ),
              }
            : {}),
        });
        say(`wrote ${jsonPath}`);
      }
    },
  );
  return outcome.failed ? 1 : 0;
}
