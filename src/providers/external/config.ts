/**
 * The `external` provider's configuration (`--provider-config`, JSON). Parsing is strict:
 * unknown fields are errors.
 */
import { invalidInput } from '../../errors.js';

export interface ExternalTlsConfig {
  /** PEM file of the CA that signed the provider's certificate. */
  readonly ca: string;
  /** PEM files of the agent's client certificate and key (mutual TLS). */
  readonly cert: string;
  readonly key: string;
}

export interface ExternalConfig {
  /**
   * Where the provider listens: `unix:///path.sock` or `host:port` (then `tls` is required).
   * Default with `command`: a unix socket in a private temporary directory.
   */
  readonly address?: string;
  /** Mutual TLS for a TCP address. */
  readonly tls?: ExternalTlsConfig;
  /**
   * The provider's program and arguments: the agent starts it with `VK_PROVIDER_ADDRESS` in its
   * environment, restarts it when it dies and stops it on shutdown. Default: none (the provider
   * runs on its own).
   */
  readonly command?: readonly string[];
  /** Added to the environment of `command`. Default: none. */
  readonly env?: Readonly<Record<string, string>>;
  /** The deadline of every unary call, in milliseconds. Default: 30 000. */
  readonly callTimeoutMs?: number;
  /** How long to wait for the first handshake, in milliseconds. Default: 30 000. */
  readonly connectTimeoutMs?: number;
}

const FIELDS = new Set(['address', 'tls', 'command', 'env', 'callTimeoutMs', 'connectTimeoutMs']);

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Validates `json` as an {@link ExternalConfig}; throws `InvalidInput` with one line. */
export function parseExternalConfig(json: unknown): ExternalConfig {
  if (!isObject(json)) throw invalidInput('the external provider config must be a JSON object');
  for (const key of Object.keys(json))
    if (!FIELDS.has(key)) throw invalidInput(`unknown field "${key}"`);
  const { address, tls, command, env, callTimeoutMs, connectTimeoutMs } = json;
  const out: {
    address?: string;
    tls?: ExternalTlsConfig;
    command?: string[];
    env?: Record<string, string>;
    callTimeoutMs?: number;
    connectTimeoutMs?: number;
  } = {};
  if (address !== undefined) {
    if (typeof address !== 'string' || address === '')
      throw invalidInput('address must be a non-empty string');
    if (address.startsWith('unix:') && !address.startsWith('unix:///'))
      throw invalidInput(`address "${address}": a unix socket is written unix:///absolute/path`);
    if (!address.startsWith('unix:') && !/^[^/\s]+:\d+$/.test(address))
      throw invalidInput(`address "${address}" is neither unix:///path nor host:port`);
    out.address = address;
  }
  if (tls !== undefined) {
    if (!isObject(tls)) throw invalidInput('tls must be an object with ca, cert and key');
    for (const key of Object.keys(tls))
      if (!['ca', 'cert', 'key'].includes(key)) throw invalidInput(`unknown field "tls.${key}"`);
    const { ca, cert, key } = tls;
    if (typeof ca !== 'string' || typeof cert !== 'string' || typeof key !== 'string')
      throw invalidInput('tls needs ca, cert and key: paths of PEM files');
    out.tls = { ca, cert, key };
  }
  if (command !== undefined) {
    if (
      !Array.isArray(command) ||
      command.length === 0 ||
      !command.every((c): c is string => typeof c === 'string' && c !== '')
    )
      throw invalidInput('command must be a non-empty array of non-empty strings');
    out.command = command;
  }
  if (env !== undefined) {
    if (!isObject(env) || !Object.values(env).every((v) => typeof v === 'string'))
      throw invalidInput('env must be an object of strings');
    if (command === undefined) throw invalidInput('env is for command: give command too');
    out.env = env as Record<string, string>;
  }
  for (const [name, value] of [
    ['callTimeoutMs', callTimeoutMs],
    ['connectTimeoutMs', connectTimeoutMs],
  ] as const) {
    if (value === undefined) continue;
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0)
      throw invalidInput(`${name} must be a positive integer`);
    out[name] = value;
  }
  if (out.address === undefined && out.command === undefined)
    throw invalidInput('give address, command, or both');
  if (out.address !== undefined && !out.address.startsWith('unix:') && out.tls === undefined)
    throw invalidInput(`address "${out.address}" is TCP: tls (mutual TLS) is required`);
  return out;
}
