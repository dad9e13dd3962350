/**
 * The cri provider's configuration: a JSON document. Parsing is strict (unknown fields are
 * errors), so a typo fails at start instead of being ignored.
 */
import { invalidInput } from '../../errors.js';

export interface CriConfig {
  /** The runtime's CRI socket, `unix:///path`. Required. */
  readonly runtimeEndpoint: string;
  /** The image service's socket. Default: `runtimeEndpoint`. */
  readonly imageEndpoint?: string;
  /**
   * The node's pod CIDR, handed to the runtime (UpdateRuntimeConfig), whose CNI configuration
   * gives pods addresses from it. Default: the `--pod-cidr` flag; without either the runtime's
   * own network configuration decides.
   */
  readonly podCIDR?: string;
  /**
   * Where pod logs, volumes, hosts files and specs (for a restarted agent) live. Default:
   * `/var/lib/virtual-kubelet/cri/<node>`.
   */
  readonly stateDir?: string;
  /** The first restart back-off after a crash, in seconds. Default: 10 (the kubelet's). */
  readonly backoffInitialSeconds?: number;
  /** The longest restart and image-pull back-off, in seconds. Default: 300 (the kubelet's). */
  readonly backoffMaxSeconds?: number;
  /** How often each pod's containers are checked, in milliseconds. Default: 1000. */
  readonly syncIntervalMs?: number;
  /** Node capacity. Default: this machine's cores and memory. */
  readonly cpu?: string;
  readonly memory?: string;
  /** Default: `"110"`. */
  readonly pods?: string;
  /**
   * How often dead containers and sandboxes are collected, in milliseconds: per container name
   * of a live pod its current run and one dead one before it stay (what `logs --previous`
   * reads); those of pods that are gone go. Default: 60 000 (the kubelet's period).
   */
  readonly containerGcIntervalMs?: number;
  /** How often unused images are collected, in milliseconds. Default: 300 000 (the kubelet's). */
  readonly imageGcIntervalMs?: number;
  /**
   * Image filesystem usage (percent) at which unused images are removed, least recently used
   * first. Default: 85 (`imageGCHighThresholdPercent`); 100 turns image GC off.
   */
  readonly imageGcHighThresholdPercent?: number;
  /** Usage (percent) image GC brings the filesystem down to. Default: 80. */
  readonly imageGcLowThresholdPercent?: number;
  /** An image younger than this (since first seen) is never removed. Default: 120 (2 min). */
  readonly imageMinimumGcAgeSeconds?: number;
}

const FIELDS = new Set([
  'runtimeEndpoint',
  'imageEndpoint',
  'podCIDR',
  'stateDir',
  'backoffInitialSeconds',
  'backoffMaxSeconds',
  'syncIntervalMs',
  'cpu',
  'memory',
  'pods',
  'containerGcIntervalMs',
  'imageGcIntervalMs',
  'imageGcHighThresholdPercent',
  'imageGcLowThresholdPercent',
  'imageMinimumGcAgeSeconds',
]);

/** Validates a parsed JSON document; throws `InvalidInput` naming the first bad field. */
export function parseCriConfig(json: unknown): CriConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw invalidInput('the cri provider config must be a JSON object');
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!FIELDS.has(k))
      throw invalidInput(`unknown field '${k}' (known: ${[...FIELDS].join(', ')})`);
  const str = (k: string, required = false): void => {
    if (o[k] === undefined) {
      if (required) throw invalidInput(`'${k}' is required`);
      return;
    }
    if (typeof o[k] !== 'string' || o[k] === '')
      throw invalidInput(`'${k}' must be a non-empty string`);
  };
  const num = (k: string, min: number, max = Infinity): void => {
    if (o[k] === undefined) return;
    if (typeof o[k] !== 'number' || !Number.isFinite(o[k]) || o[k] < min || o[k] > max)
      throw invalidInput(
        max === Infinity
          ? `'${k}' must be a number >= ${String(min)}`
          : `'${k}' must be a number from ${String(min)} to ${String(max)}`,
      );
  };
  str('runtimeEndpoint', true);
  for (const k of ['imageEndpoint', 'podCIDR', 'stateDir', 'cpu', 'memory', 'pods']) str(k);
  for (const k of ['runtimeEndpoint', 'imageEndpoint'])
    if (typeof o[k] === 'string' && !(o[k].startsWith('unix:///') || o[k].startsWith('/')))
      throw invalidInput(`'${k}' must be unix:///path/to/socket`);
  num('backoffInitialSeconds', 0);
  num('backoffMaxSeconds', 0);
  num('syncIntervalMs', 10);
  num('containerGcIntervalMs', 100);
  num('imageGcIntervalMs', 100);
  num('imageGcHighThresholdPercent', 0, 100);
  num('imageGcLowThresholdPercent', 0, 100);
  num('imageMinimumGcAgeSeconds', 0);
  if (
    ((o.imageGcLowThresholdPercent as number | undefined) ?? 80) >
    ((o.imageGcHighThresholdPercent as number | undefined) ?? 85)
  )
    throw invalidInput(
      `'imageGcLowThresholdPercent' must not be above 'imageGcHighThresholdPercent'`,
    );
  return o as unknown as CriConfig;
}
