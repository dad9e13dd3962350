// Flags of the Go virtual-kubelet that this agent has no flag of its own for. A command line
// written for the Go binary should either work here or stop with one line that says what to use
// instead; it must never fail with a bare "unknown option". Each flag is accepted with the
// meaning it has in Go, accepted and ignored with a note (it does nothing in Go either), or
// refused with the alternative.
import { Option, type Command } from 'commander';
import { VirtualKubeletError } from '../errors.js';

/** What the Go flags set, as commander parses them (hidden from --help). */
export interface GoFlagOptions {
  metricsAddr?: string;
  enableNodeLease?: boolean;
  taint?: string;
  namespace?: string;
  traceExporter?: string;
  traceServiceName?: string;
  traceTag?: string;
  traceSampleRate?: string;
}

interface GoFlag {
  readonly flags: string;
  readonly key: keyof GoFlagOptions;
  /** `ignore`: a note on stderr and go on; `refuse`: one line, exit status 1. */
  readonly action: 'use' | 'ignore' | 'refuse';
  readonly note?: string;
}

const NO_TRACES =
  'this agent exports no traces; its metrics are served at /metrics on the kubelet port';

const GO_FLAGS: readonly GoFlag[] = [
  {
    flags: '--metrics-addr <addr>',
    key: 'metricsAddr',
    action: 'ignore',
    note: 'the metrics are served at /metrics on the kubelet port (--listen-port), behind its authentication',
  },
  {
    flags: '--enable-node-lease',
    key: 'enableNodeLease',
    action: 'ignore',
    note: 'the node always keeps a Lease (--node-lease-duration-seconds)',
  },
  // Go: deprecated, the taint's key; the environment's VKUBELET_TAINT_* still apply.
  { flags: '--taint <key>', key: 'taint', action: 'use' },
  {
    flags: '--namespace <namespace>',
    key: 'namespace',
    action: 'refuse',
    note: 'the node runs the pods of every namespace that are bound to it; keep pods off it with its taint (--disable-taint removes it) or with node selectors',
  },
  { flags: '--trace-exporter <name>', key: 'traceExporter', action: 'refuse', note: NO_TRACES },
  {
    flags: '--trace-service-name <name>',
    key: 'traceServiceName',
    action: 'refuse',
    note: NO_TRACES,
  },
  { flags: '--trace-tag <k=v>', key: 'traceTag', action: 'refuse', note: NO_TRACES },
  {
    flags: '--trace-sample-rate <rate>',
    key: 'traceSampleRate',
    action: 'refuse',
    note: NO_TRACES,
  },
];

/** Adds the Go flags to `run`, hidden from its help. */
export function addGoFlags(cmd: Command): Command {
  for (const f of GO_FLAGS) cmd.addOption(new Option(f.flags).hideHelp());
  return cmd;
}

const flagName = (f: GoFlag): string => f.flags.split(' ')[0] ?? f.flags;

/**
 * The notes for the Go flags that were given; throws `InvalidInput` (one line: the flag and what
 * to use instead) for a flag that is refused.
 */
export function checkGoFlags(opts: GoFlagOptions): string[] {
  const notes: string[] = [];
  for (const f of GO_FLAGS) {
    if (opts[f.key] === undefined || f.action === 'use') continue;
    const line = `${flagName(f)} is not used: ${f.note ?? ''}`;
    if (f.action === 'refuse') throw new VirtualKubeletError('InvalidInput', line);
    notes.push(line);
  }
  return notes;
}

/** klog's boolean flags (the others take a value). */
const KLOG_BOOLEANS = new Set([
  'logtostderr',
  'alsologtostderr',
  'add_dir_header',
  'skip_headers',
  'skip_log_headers',
  'one_output',
]);

/**
 * The Go binary takes every klog flag as `--klog.<name>`; they have no meaning here. Returns the
 * arguments without them (a value in the next argument goes too), and a note when any was there.
 */
export function withoutKlogFlags(argv: readonly string[]): { argv: string[]; note?: string } {
  const out: string[] = [];
  const dropped: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--klog\.([\w-]+)(=.*)?$/.exec(arg);
    if (!m) {
      out.push(arg);
      continue;
    }
    dropped.push(`--klog.${m[1] ?? ''}`);
    const next = argv[i + 1];
    if (m[2] === undefined && !KLOG_BOOLEANS.has(m[1] ?? '') && next && !next.startsWith('-')) i++;
  }
  if (dropped.length === 0) return { argv: out };
  return {
    argv: out,
    note: `${dropped.join(', ')} not used: klog flags have no meaning here; use --log-level and --log-format`,
  };
}
