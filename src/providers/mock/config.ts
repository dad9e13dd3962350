/**
 * The mock provider's configuration: a JSON document whose every field is optional. Parsing is
 * strict (unknown fields are errors), so a typo in a file fails at start instead of being ignored.
 */
import { isIP } from 'node:net';
import { invalidInput } from '../../errors.js';
import { parseQuantity } from '../../kubelet/quantity.js';
import {
  LIFECYCLE_METHODS,
  type NodeProvider,
  type PodAddressProvider,
  type PodLifecycleHandler,
} from '../../provider.js';
import { parsePodCIDR } from './addresses.js';
import { MAX_LOG_LINES } from './logs.js';

/**
 * The provider methods a fault can be injected into: the contract's lifecycle, `ping` and
 * `preparePod`.
 */
export const FAULT_OPERATIONS = [
  ...LIFECYCLE_METHODS,
  'ping',
  'preparePod',
] as const satisfies readonly (keyof (PodLifecycleHandler & NodeProvider & PodAddressProvider))[];

export type FaultOperation = (typeof FAULT_OPERATIONS)[number];

/** The error an injected fault throws, named after its factory in `errors.ts`. */
export type FaultError = 'unavailable' | 'permanent' | 'invalidInput';

const FAULT_ERRORS: readonly FaultError[] = ['unavailable', 'permanent', 'invalidInput'];

/** Makes one operation slow or unreliable. */
export interface MockFault {
  /** Probability (0 to 1) that a call fails. Default: 0. */
  readonly errorRate?: number;
  /** Delay before every call answers, in milliseconds; it ends early on abort. Default: 0. */
  readonly latencyMs?: number;
  /**
   * Probability (0 to 1) that a call never answers: it waits until its signal aborts (or the
   * provider closes) and then throws the abort reason, as a backend that lost the request would
   * leave its caller waiting. Decided before `errorRate`. Default: 0.
   */
  readonly hangRate?: number;
  /** What a failing call throws. Default: `unavailable` (the core retries it with backoff). */
  readonly error?: FaultError;
}

/** What a container, found by name in any pod, does after it starts. */
export interface MockContainerBehaviour {
  /** Seconds the container runs before it exits. Default: it never exits on its own. */
  readonly exitAfterSeconds?: number;
  /** Its exit code, 0 to 255. Default: 0. */
  readonly exitCode?: number;
  /**
   * Seconds it takes to exit once its pod is deleted, as a process handling SIGTERM would;
   * the pod's grace period cuts it short. Default: 0.
   */
  readonly stopAfterSeconds?: number;
}

/** The mock provider's configuration. Quantities are Kubernetes quantities (`"20"`, `"100Gi"`). */
export interface MockConfig {
  /** Default: `"20"`. */
  readonly cpu?: string;
  /** Default: `"100Gi"`. */
  readonly memory?: string;
  /** Default: `"110"`, the kubelet's default. */
  readonly pods?: string;
  /** Default: `"100Gi"`. */
  readonly ephemeralStorage?: string;
  /** Extended resources, such as `{ "nvidia.com/gpu": "2" }`. Default: none. */
  readonly others?: Readonly<Record<string, string>>;
  /** Written to the Node's `spec.providerID`. Default: not set. */
  readonly providerID?: string;
  /**
   * Every pod's IP, the same for all (as if they used the host's network); `podCIDR` is then
   * not used. Default: none, each pod gets an address of `podCIDR`.
   */
  readonly podIP?: string;
  /**
   * The IPv4 range `preparePod` gives each pod an address of (prefix length 8 to 30; the
   * network address, the first address and the broadcast address are never given): one per pod
   * UID, the same again for the same UID, freed when the pod is deleted, kept in `stateFile`.
   * Bookkeeping only: nothing is reachable there. Default: `"10.244.0.0/16"`.
   */
  readonly podCIDR?: string;
  /** The host IP reported in pod statuses. Default: `"127.0.0.1"`. */
  readonly hostIP?: string;
  /** Latency and errors per operation. Default: none. */
  readonly faults?: Readonly<Partial<Record<FaultOperation, MockFault>>>;
  /** Behaviour by container name. Default: containers run until their pod is deleted. */
  readonly containers?: Readonly<Record<string, MockContainerBehaviour>>;
  /**
   * Milliseconds between the lines every running container writes to its log
   * (`mock: <name> tick <n>`); 0 writes none, leaving only the line written at start. Default: 1000.
   */
  readonly logIntervalMs?: number;
  /**
   * Bytes of filler every running container writes to its log at start, after its first line:
   * lines of `LOG_FILL_LINE_BYTES` (the last one shorter), each ending in `\n`, so that a log of a
   * known size can be read at once (throughput measurements). At most `MAX_LOG_FILL_BYTES`, which
   * the log keeps whole. Default: 0.
   */
  readonly logFillBytes?: number;
  /**
   * A file that keeps the provider's pods across restarts of its process (see state.ts for the
   * format): every create, update and forget is appended to it before it is reported, and a new
   * provider runs again every pod the file holds, with the status recorded at its creation and
   * fresh containers (logs start over). A relative path is resolved against the working
   * directory. Default: none (pods live in memory only).
   */
  readonly stateFile?: string;
}

/** Bytes of one filler line of `logFillBytes`, its line break included. */
export const LOG_FILL_LINE_BYTES = 16_384;

/** The most `logFillBytes` can be: as many filler lines as a log keeps beside its first line. */
export const MAX_LOG_FILL_BYTES = (MAX_LOG_LINES - 1) * LOG_FILL_LINE_BYTES;

const TOP_LEVEL_FIELDS = new Set([
  'cpu',
  'memory',
  'pods',
  'ephemeralStorage',
  'others',
  'providerID',
  'podIP',
  'podCIDR',
  'hostIP',
  'faults',
  'containers',
  'logIntervalMs',
  'logFillBytes',
  'stateFile',
]);
const RESERVED_RESOURCES = new Set(['cpu', 'memory', 'pods', 'ephemeral-storage']);

// A non-negative Kubernetes quantity: a decimal number with a binary or decimal SI suffix or an
// exponent (k8s.io/apimachinery/pkg/api/resource).
// An optional DNS-subdomain prefix and a name, like `nvidia.com/gpu` or `hugepages-2Mi`.
const RESOURCE_NAME =
  /^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$/;

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

function record(value: unknown, field: string): Record<string, unknown> {
  if (!isRecord(value)) throw invalidInput(`${field} must be an object`);
  return value;
}

function rejectUnknown(
  value: Record<string, unknown>,
  known: ReadonlySet<string>,
  prefix: string,
): void {
  for (const key of Object.keys(value)) {
    if (!known.has(key)) {
      throw invalidInput(
        `${prefix}${key} is not a known field (expected one of ${[...known].join(', ')})`,
      );
    }
  }
}

function isNonNegativeQuantity(text: string): boolean {
  try {
    return parseQuantity(text) >= 0;
  } catch {
    return false;
  }
}

function quantity(value: unknown, field: string): string {
  // JSON writers often emit counts as numbers; Kubernetes accepts them, so do we.
  const text = typeof value === 'number' && Number.isFinite(value) ? String(value) : value;
  if (typeof text !== 'string' || !isNonNegativeQuantity(text)) {
    throw invalidInput(
      `${field} must be a non-negative Kubernetes quantity such as "20" or "100Gi"`,
    );
  }
  return text;
}

function ip(value: unknown, field: string): string {
  if (typeof value !== 'string' || isIP(value) === 0) {
    throw invalidInput(`${field} must be an IPv4 or IPv6 address`);
  }
  return value;
}

function number(value: unknown, field: string, min: number, max: number, what: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw invalidInput(`${field} must be ${what}`);
  }
  return value;
}

function fault(value: unknown, field: string): MockFault {
  const input = record(value, field);
  rejectUnknown(input, new Set(['errorRate', 'latencyMs', 'hangRate', 'error']), `${field}.`);
  const out: { errorRate?: number; latencyMs?: number; hangRate?: number; error?: FaultError } = {};
  if (input.errorRate !== undefined) {
    out.errorRate = number(input.errorRate, `${field}.errorRate`, 0, 1, 'a number between 0 and 1');
  }
  if (input.hangRate !== undefined) {
    out.hangRate = number(input.hangRate, `${field}.hangRate`, 0, 1, 'a number between 0 and 1');
  }
  if (input.latencyMs !== undefined) {
    out.latencyMs = number(
      input.latencyMs,
      `${field}.latencyMs`,
      0,
      Number.MAX_SAFE_INTEGER,
      'a non-negative number',
    );
  }
  if (input.error !== undefined) {
    const error = FAULT_ERRORS.find((e) => e === input.error);
    if (error === undefined) {
      throw invalidInput(`${field}.error must be one of ${FAULT_ERRORS.join(', ')}`);
    }
    out.error = error;
  }
  return out;
}

function container(value: unknown, field: string): MockContainerBehaviour {
  const input = record(value, field);
  rejectUnknown(input, new Set(['exitAfterSeconds', 'exitCode', 'stopAfterSeconds']), `${field}.`);
  const out: { exitAfterSeconds?: number; exitCode?: number; stopAfterSeconds?: number } = {};
  if (input.stopAfterSeconds !== undefined) {
    out.stopAfterSeconds = number(
      input.stopAfterSeconds,
      `${field}.stopAfterSeconds`,
      0,
      86_400,
      'a number of seconds between 0 and 86400',
    );
  }
  if (input.exitAfterSeconds !== undefined) {
    out.exitAfterSeconds = number(
      input.exitAfterSeconds,
      `${field}.exitAfterSeconds`,
      0,
      // setTimeout's limit (about 24.8 days).
      2_147_483,
      'a number of seconds between 0 and 2147483',
    );
  }
  if (input.exitCode !== undefined) {
    if (!Number.isInteger(input.exitCode)) {
      throw invalidInput(`${field}.exitCode must be an integer between 0 and 255`);
    }
    out.exitCode = number(
      input.exitCode,
      `${field}.exitCode`,
      0,
      255,
      'an integer between 0 and 255',
    );
  }
  return out;
}

/**
 * Validates a parsed JSON document as a `MockConfig` and returns a normalized copy (quantities
 * given as numbers become strings). Defaults are not filled in; the provider applies them.
 * Throws `InvalidInput` naming the first bad field, such as
 * `faults.createPod.errorRate must be a number between 0 and 1`.
 */
export function parseMockConfig(json: unknown): MockConfig {
  const input = record(json, 'the mock configuration');
  rejectUnknown(input, TOP_LEVEL_FIELDS, '');
  const out: {
    -readonly [K in keyof MockConfig]: MockConfig[K];
  } = {};
  if (input.cpu !== undefined) out.cpu = quantity(input.cpu, 'cpu');
  if (input.memory !== undefined) out.memory = quantity(input.memory, 'memory');
  if (input.pods !== undefined) out.pods = quantity(input.pods, 'pods');
  if (input.ephemeralStorage !== undefined) {
    out.ephemeralStorage = quantity(input.ephemeralStorage, 'ephemeralStorage');
  }
  if (input.others !== undefined) {
    const others: Record<string, string> = {};
    for (const [name, value] of Object.entries(record(input.others, 'others'))) {
      if (!RESOURCE_NAME.test(name) || RESERVED_RESOURCES.has(name)) {
        throw invalidInput(
          `others.${name} must be an extended resource name such as "nvidia.com/gpu" ` +
            '(cpu, memory, pods and ephemeral-storage have their own fields)',
        );
      }
      others[name] = quantity(value, `others.${name}`);
    }
    out.others = others;
  }
  if (input.providerID !== undefined) {
    if (typeof input.providerID !== 'string' || input.providerID === '') {
      throw invalidInput('providerID must be a non-empty string');
    }
    out.providerID = input.providerID;
  }
  if (input.podIP !== undefined) out.podIP = ip(input.podIP, 'podIP');
  if (input.podCIDR !== undefined) {
    const cidr = input.podCIDR;
    const range = typeof cidr === 'string' ? parsePodCIDR(cidr) : 'a string';
    if (typeof cidr !== 'string' || typeof range === 'string')
      throw invalidInput(`podCIDR must be ${typeof range === 'string' ? range : 'a string'}`);
    out.podCIDR = cidr;
  }
  if (input.hostIP !== undefined) out.hostIP = ip(input.hostIP, 'hostIP');
  if (input.faults !== undefined) {
    const faults: Partial<Record<FaultOperation, MockFault>> = {};
    const given = record(input.faults, 'faults');
    rejectUnknown(given, new Set(FAULT_OPERATIONS), 'faults.');
    for (const op of FAULT_OPERATIONS) {
      if (given[op] !== undefined) faults[op] = fault(given[op], `faults.${op}`);
    }
    out.faults = faults;
  }
  if (input.logIntervalMs !== undefined) {
    out.logIntervalMs = number(
      input.logIntervalMs,
      'logIntervalMs',
      0,
      // setInterval's limit (about 24.8 days).
      2_147_483_647,
      'a number of milliseconds between 0 and 2147483647',
    );
  }
  if (input.logFillBytes !== undefined) {
    if (!Number.isInteger(input.logFillBytes)) {
      throw invalidInput(
        `logFillBytes must be an integer number of bytes between 0 and ${String(MAX_LOG_FILL_BYTES)}`,
      );
    }
    out.logFillBytes = number(
      input.logFillBytes,
      'logFillBytes',
      0,
      MAX_LOG_FILL_BYTES,
      `an integer number of bytes between 0 and ${String(MAX_LOG_FILL_BYTES)}`,
    );
  }
  if (input.stateFile !== undefined) {
    if (typeof input.stateFile !== 'string' || input.stateFile === '') {
      throw invalidInput('stateFile must be a non-empty path');
    }
    out.stateFile = input.stateFile;
  }
  if (input.containers !== undefined) {
    const containers: Record<string, MockContainerBehaviour> = {};
    for (const [name, value] of Object.entries(record(input.containers, 'containers'))) {
      containers[name] = container(value, `containers.${name}`);
    }
    out.containers = containers;
  }
  return out;
}
