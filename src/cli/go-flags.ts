// Flags of the Go virtual-kubelet that this agent has no flag of its own for. A command line
// written for the Go binary should either work here or stop with one line that says what to use
// instead; it must never fail with a bare "unknown option". Each flag is accepted with the
// meaning it has in Go, accepted and ignored with a note (it does nothing in Go either), or
// refused with the alternative. The trace flags are this agent's own too, so --help shows them.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { VirtualKubeletError } from '../errors.js';

/** What the Go flags set, as commander parses them. */
export interface GoFlagOptions {
  metricsAddr?: string;
  enableNodeLease?: boolean;
  taint?: string;
  namespace?: string;
  /** `--trace-exporter`: `otlp` (on) or `none` (off); see `cli/tracing.ts`. */
  traceExporter?: 'otlp' | 'none';
  traceServiceName?: string;
  /** `--trace-tag k=v`: resource attributes of the spans. */
  traceTag?: Record<string, string>;
  /** `--trace-sample-rate`: percent of traces sampled, 0 to 100 (`always` 100, `never` 0). */
  traceSampleRate?: number;
}

interface GoFlag {
  readonly flags: string;
  readonly key: keyof GoFlagOptions;
  /** `ignore`: a note on stderr and go on; `refuse`: one line, exit status 1. */
  readonly action: 'use' | 'ignore' | 'refuse';
  readonly note?: string;
  /** Shown in `--help` (the others are hidden: they exist for Go command lines). */
  readonly help?: string;
  readonly parse?: (value: string, previous: unknown) => unknown;
}

/** `--trace-sample-rate`: `always`, `never`, or a percentage from 0 to 100, as Go takes it. */
export function parseSampleRate(value: string): number {
  const v = value.trim().toLowerCase();
  if (v === 'always') return 100;
  if (v === 'never') return 0;
  const n = Number(v);
  if (v === '' || !Number.isFinite(n) || n < 0 || n > 100)
    throw new InvalidArgumentError(
      `expected always, never or a percentage from 0 to 100, got '${value}'`,
    );
  return n;
}

/**
 * `--trace-exporter`: names separated by commas, as Go takes them. Go's exporters were
 * OpenCensus ones; this agent speaks OTLP, which Jaeger and the OpenTelemetry Collector receive.
 */
export function parseTraceExporter(value: string): 'otlp' | 'none' {
  const names = value
    .split(',')
    .map((n) => n.trim().toLowerCase())
    .filter(Boolean);
  const other = names.find((n) => n !== 'otlp' && n !== 'none');
  if (other !== undefined)
    throw new InvalidArgumentError(
      `'${other}' is not an exporter of this agent: it sends OTLP over HTTP, which Jaeger and the OpenTelemetry Collector receive; use --trace-exporter otlp and OTEL_EXPORTER_OTLP_ENDPOINT (for Jaeger: http://<host>:4318)`,
    );
  return names.includes('otlp') ? 'otlp' : 'none';
}

/** `--trace-tag key=value` (commas separate several; the flag may be repeated). */
export function parseTraceTags(
  value: string,
  previous: Record<string, string> = {},
): Record<string, string> {
  const out = { ...previous };
  for (const pair of value.split(',').filter(Boolean)) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got '${pair}'`);
    out[pair.slice(0, eq).trim()] = pair.slice(eq + 1);
  }
  return out;
}

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
  {
    flags: '--trace-exporter <names>',
    key: 'traceExporter',
    action: 'use',
    help: 'otlp: send traces over OTLP/HTTP (to OTEL_EXPORTER_OTLP_ENDPOINT, default http://localhost:4318); none: no traces',
    parse: parseTraceExporter,
  },
  {
    flags: '--trace-service-name <name>',
    key: 'traceServiceName',
    action: 'use',
    help: 'service.name of the traces (default: $OTEL_SERVICE_NAME, else virtual-kubelet)',
  },
  {
    flags: '--trace-tag <k=v>',
    key: 'traceTag',
    action: 'use',
    help: 'a resource attribute of the traces (repeatable)',
    parse: (value, previous) => parseTraceTags(value, previous as Record<string, string>),
  },
  {
    flags: '--trace-sample-rate <rate>',
    key: 'traceSampleRate',
    action: 'use',
    help: 'percent of traces to sample: 0 to 100, always or never; 0 turns tracing off (default: off unless an OTLP endpoint is set, then $OTEL_TRACES_SAMPLER or all)',
    parse: parseSampleRate,
  },
];

/** Adds the Go flags to `run`; those without help text are hidden from its help. */
export function addGoFlags(cmd: Command): Command {
  for (const f of GO_FLAGS) {
    const option = new Option(f.flags, f.help);
    if (f.parse) option.argParser(f.parse);
    cmd.addOption(f.help === undefined ? option.hideHelp() : option);
  }
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
