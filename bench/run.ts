// Benchmarks: `npm run bench -- <scenario> [options]`.
//
//   streams   MiB/s of `kubectl exec -i`, `kubectl logs` and `kubectl port-forward` through the
//             API server, ours with the mock or process provider (bench/streams.ts); `exec` and
//             `logs` run one of them.
//   rollout   N pods bound to one node, create to all Running, then delete to all gone, for our
//             agent, the Go virtual-kubelet, kwok and the ideal `limit` agent (bench/rollout.ts);
//             with `--provider kubernetes`, pods offloaded to a second cluster against the same
//             pods created there directly (bench/offload.ts).
//   latency   pods created at a steady rate, create-to-Running p50/p90/p99 per system
//             (bench/latency.ts). Both with `--provider process`: the process provider with and
//             without its pod network (bench/network-cost.ts).
//   nodes     1 000 nodes in one agent process for 3 minutes: CPU, RSS, every node kept Ready
//             (bench/nodes.ts).
//   chart     an SVG of rollout seconds against N from result files (bench/chart.ts).
//   cni       the process provider's pod network: CNI ADD and DEL per pod, p50/p99 (bench/cni.ts).
//   protocol  what the provider protocol costs: exec -i MiB/s and pod calls per second, the mock
//             in process against the same over the protocol and the Go example (bench/protocol.ts).
//   chaos     the chaos and abuse suite: agent crashes, control-plane outages, provider faults,
//             bad specs, a kubelet-API fuzzer, the authorization matrix (bench/chaos/).
//
// See bench/README.md for every option.
import { chaos } from './chaos/run.js';
import { chart } from './chart.js';
import { cni } from './cni.js';
import { latency } from './latency.js';
import { nodes } from './nodes.js';
import { protocol } from './protocol.js';
import { rollout } from './rollout.js';
import { exec, logs, streams } from './streams.js';
import { say } from './util.js';

const SCENARIOS: Readonly<Record<string, (argv: string[]) => Promise<number>>> = {
  streams,
  exec,
  logs,
  rollout,
  latency,
  nodes,
  chart,
  chaos,
  cni,
  protocol,
};

const argv = process.argv.slice(2);
const index = argv.findIndex((a) => !a.startsWith('-'));
const scenario = index >= 0 ? (argv[index] ?? 'streams') : 'streams';
const run = SCENARIOS[scenario];
if (!run) {
  say(`unknown scenario '${scenario}': choose ${Object.keys(SCENARIOS).join(', ')}`);
  process.exit(2);
}
const rest = index >= 0 ? [...argv.slice(0, index), ...argv.slice(index + 1)] : argv;
try {
  process.exitCode = await run(rest);
} catch (err) {
  const aborted =
    err instanceof Error &&
    (err.name === 'AbortError' || (err.cause instanceof Error && err.cause.name === 'AbortError'));
  say(
    aborted
      ? 'interrupted'
      : `${scenario} failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`,
  );
  process.exitCode = aborted ? 130 : 1;
}
