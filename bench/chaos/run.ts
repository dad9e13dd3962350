// `npm run bench -- chaos [--scenarios a,b] [--short] [--json FILE]`: the chaos and abuse suite
// (`--soak-seconds N --soak-rate R --soak-providers mock,process` shape the on-request soak).
// Each scenario runs against a fresh dev cluster of its own (some of them break it on purpose),
// with our agent as its own process under a kubelet's identity; the command exits 1 when any
// scenario's `ok` is false. Correctness only: no time is asserted.
import { setMaxListeners } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ensureBinaries, type Binaries } from '../../src/devcluster/build.js';
import { DevCluster } from '../../src/devcluster/cluster.js';
import { KubeClient, loadKubeConfig } from '../../src/kube/client.js';
import { gitCommit, waitNodeReady, writeJson } from '../common.js';
import { controlPlane, machine } from '../harness.js';
import { ensureDist, repoRoot } from '../systems.js';
import { say } from '../util.js';
import { startAgent } from './agent.js';
import { pickScenarios, SCENARIO_NAMES, type ScenarioEntry } from './index.js';
import { SOAK_ENV, soakSettings, soakTimeoutSeconds } from './soak.js';
import type { ChaosAgent, ChaosContext, Figure, ScenarioResult } from './types.js';

/** How long one scenario may take before it counts as failed, in seconds. */
const SCENARIO_TIMEOUT_SECONDS = { short: 600, full: 3600 };

export async function chaos(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      scenarios: { type: 'string' },
      short: { type: 'boolean', default: false },
      json: { type: 'string' },
      'timeout-seconds': { type: 'string' },
      'soak-seconds': { type: 'string' },
      'soak-rate': { type: 'string' },
      'soak-providers': { type: 'string' },
    },
    strict: true,
  });
  const picked = pickScenarios(values.scenarios);
  if (typeof picked === 'string') {
    say(picked);
    return 2;
  }
  const short = values.short;
  // The soak reads its settings from the environment, which these flags set.
  if (values['soak-seconds']) process.env[SOAK_ENV.seconds] = values['soak-seconds'];
  if (values['soak-rate']) process.env[SOAK_ENV.rate] = values['soak-rate'];
  if (values['soak-providers']) process.env[SOAK_ENV.providers] = values['soak-providers'];
  let soakTimeout: number;
  try {
    soakTimeout = soakTimeoutSeconds(soakSettings(process.env, short));
  } catch (err) {
    say(err instanceof Error ? err.message : String(err));
    return 2;
  }
  const timeoutFor = (name: string): number =>
    values['timeout-seconds']
      ? Number(values['timeout-seconds'])
      : name === 'soak'
        ? soakTimeout
        : SCENARIO_TIMEOUT_SECONDS[short ? 'short' : 'full'];
  const stop = new AbortController();
  setMaxListeners(0, stop.signal);
  let interrupts = 0;
  const onSignal = (): void => {
    if (++interrupts === 1) {
      say('interrupted: stopping the agents and the cluster (again to kill at once)');
      stop.abort();
    } else process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const results: Record<string, ScenarioResult> = {};
  try {
    await ensureDist(say);
    const binaries = await ensureBinaries({ progress: say, signal: stop.signal });
    for (const entry of picked) {
      if (stop.signal.aborted) break;
      say(`== chaos ${entry.name}${short ? ' (short)' : ''}: ${entry.what}`);
      const started = performance.now();
      const result = await runOne(
        entry,
        binaries,
        short,
        timeoutFor(entry.name) * 1000,
        stop.signal,
      );
      const seconds = Math.round((performance.now() - started) / 100) / 10;
      results[entry.name] = { ...result, seconds };
      say(`${entry.name}: ${result.ok ? 'ok' : `FAILED: ${result.reason ?? 'no reason given'}`}`);
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  process.stdout.write(`\n${summaryTable(results)}\n`);
  const out = values.json ?? (short ? undefined : defaultPath());
  if (out) {
    await writeJson(out, {
      scenario: 'chaos',
      date: new Date().toISOString(),
      short,
      machine: machine(),
      controlPlane,
      commit: await gitCommit(),
      results,
    });
    say(`wrote ${out}`);
  }
  if (stop.signal.aborted) return 130;
  const failed = Object.entries(results).filter(([, r]) => !r.ok);
  for (const [name, r] of failed) say(`chaos ${name} failed: ${r.reason ?? 'ok is false'}`);
  return failed.length > 0 || Object.keys(results).length < picked.length ? 1 : 0;
}

const defaultPath = (): string =>
  join(repoRoot, 'bench', 'results', `${new Date().toISOString().slice(0, 10)}-chaos.json`);

/** One scenario against a fresh cluster; whatever it throws becomes `ok: false`. */
async function runOne(
  entry: ScenarioEntry,
  binaries: Binaries,
  short: boolean,
  timeoutMs: number,
  outer: AbortSignal,
): Promise<ScenarioResult> {
  const module = await entry.load();
  if ('notBuilt' in module) return { ok: false, reason: module.notBuilt };
  const dir = await mkdtemp(join(tmpdir(), `vk-bench-chaos-${entry.name}-`));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  const scenarioDir = join(dir, 'scenario');
  await mkdir(scenarioDir);
  const signal = AbortSignal.any([outer, AbortSignal.timeout(timeoutMs)]);
  setMaxListeners(0, signal);
  const log = (line: string): void => {
    say(`${entry.name}: ${line}`);
  };
  const agents: ChaosAgent[] = [];
  const cluster = new DevCluster({
    dir: join(dir, 'cluster'),
    binaries,
    log: (line) => {
      say(`cluster: ${line}`);
    },
  });
  let result: ScenarioResult;
  let client: KubeClient | undefined;
  try {
    const info = await cluster.start(signal);
    client = await KubeClient.create(loadKubeConfig(info.adminKubeconfig), {
      qps: 1e6,
      burst: 1e6,
      maxSockets: 96,
      userAgent: 'vk-bench-chaos',
    });
    const admin = client;
    const ctx: ChaosContext = {
      name: entry.name,
      cluster,
      info,
      client: admin,
      adminKubeconfig: info.adminKubeconfig,
      dir: scenarioDir,
      short,
      signal,
      startAgent: async (options) => {
        const agent = await startAgent(info, scenarioDir, entry.name, options);
        agents.push(agent);
        return agent;
      },
      waitReady: (agent, timeoutMs = 60_000) =>
        waitNodeReady(
          admin,
          agent.nodeName,
          {
            pid: agent.pid,
            logPath: agent.logPath,
            exited: () => agent.exited(),
            stop: () => agent.stop(),
          },
          timeoutMs,
          signal,
        ),
      log,
    };
    result = await abortable(module.run(ctx), signal);
  } catch (err) {
    const timedOut = signal.aborted && !outer.aborted;
    result = {
      ok: false,
      reason: timedOut
        ? `did not finish within ${String(timeoutMs / 1000)} s`
        : err instanceof Error
          ? err.message
          : String(err),
    };
  } finally {
    await Promise.all(agents.map((a) => a.stop()));
    client?.close();
    await cluster.stop();
  }
  if (result.ok) await rm(dir, { recursive: true, force: true });
  else {
    await writeFile(join(dir, 'kept'), 'logs of a failed run, kept on purpose\n');
    say(`${entry.name}: logs kept in ${dir}`);
  }
  return result;
}

/** Settles with `work`, or rejects when `signal` aborts first (the work is left to the cleanup). */
function abortable<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
    };
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

const showFigure = (v: Figure): string =>
  typeof v === 'number' ? String(Math.round(v * 1000) / 1000) : String(v);

/**
 * One line per scenario: its name, ok, its figures as `name=value`; a failed one's reason on the
 * line below.
 */
export function summaryTable(results: Readonly<Record<string, ScenarioResult>>): string {
  const names = Object.keys(results);
  const width = Math.max(8, ...names.map((n) => n.length));
  const lines = [`${'scenario'.padEnd(width)}  ok   figures`];
  for (const [name, r] of Object.entries(results)) {
    const figures = Object.entries(r)
      .filter(([k, v]) => k !== 'ok' && k !== 'reason' && v !== undefined)
      .map(([k, v]) => `${k}=${showFigure(v as Figure)}`)
      .join(' ');
    lines.push(`${name.padEnd(width)}  ${r.ok ? 'yes' : 'NO '}  ${figures}`);
    if (!r.ok) lines.push(`${''.padEnd(width)}       reason: ${r.reason ?? 'none given'}`);
  }
  return lines.join('\n');
}

export { SCENARIO_NAMES };
