// The agent's logger: pino underneath, JSON lines by default or text lines for a terminal, and
// each key at most once per line. pino appends a child's bindings to its parent's, so a provider
// that names itself under a logger the CLI already bound with `provider` would print the key
// twice; here a child is made from the root with the merged bindings, the child's value winning.
import { pino, type Logger as PinoLogger } from 'pino';
import type { Logger } from '../log.js';

export const LOG_FORMATS = ['json', 'text'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AgentLoggerOptions {
  readonly level: LogLevel;
  /** `json` (default): one JSON object a line. `text`: `time LEVEL message key=value ...`. */
  readonly format?: LogFormat;
  /** Where lines go. Default: standard error, written synchronously (nothing lost on exit). */
  readonly write?: (line: string) => void;
}

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};

/** A text value as it reads on a terminal: bare when it has no space, quote or `=`, else JSON. */
function textValue(value: unknown): string {
  if (typeof value === 'string') return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (value === null || typeof value !== 'object') return String(value);
  return JSON.stringify(value);
}

/**
 * One JSON line of pino as a text line: `2026-12-07T10:00:00.000Z INFO message key=value ...`.
 * A line that is not JSON is passed on as it is.
 */
export function textLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, ...rest } = entry;
  const when = typeof time === 'number' ? new Date(time).toISOString() : textValue(time ?? '');
  const name = typeof level === 'number' ? (LEVEL_NAMES[level] ?? String(level)) : String(level);
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${textValue(v)}`);
  return [
    when,
    name.padEnd(5),
    ...(msg === undefined ? [] : [typeof msg === 'string' ? msg : textValue(msg)]),
    ...fields,
  ].join(' ');
}

class AgentLogger implements Logger {
  readonly #root: PinoLogger;
  readonly #bindings: Readonly<Record<string, unknown>>;
  readonly #pino: PinoLogger;

  constructor(root: PinoLogger, bindings: Readonly<Record<string, unknown>>) {
    this.#root = root;
    this.#bindings = bindings;
    this.#pino = Object.keys(bindings).length === 0 ? root : root.child(bindings);
  }

  child(bindings: Record<string, unknown>): Logger {
    return new AgentLogger(this.#root, { ...this.#bindings, ...bindings });
  }

  /** The line's own fields, less those a binding already says with the same value. */
  #fields(obj: object): object {
    const entries = Object.entries(obj);
    const kept = entries.filter(([k, v]) => !(k in this.#bindings && this.#bindings[k] === v));
    return kept.length === entries.length ? obj : Object.fromEntries(kept);
  }

  error(obj: object | string, msg?: string): void {
    if (typeof obj === 'string') this.#pino.error(obj);
    else this.#pino.error(this.#fields(obj), msg);
  }

  warn(obj: object | string, msg?: string): void {
    if (typeof obj === 'string') this.#pino.warn(obj);
    else this.#pino.warn(this.#fields(obj), msg);
  }

  info(obj: object | string, msg?: string): void {
    if (typeof obj === 'string') this.#pino.info(obj);
    else this.#pino.info(this.#fields(obj), msg);
  }

  debug(obj: object | string, msg?: string): void {
    if (typeof obj === 'string') this.#pino.debug(obj);
    else this.#pino.debug(this.#fields(obj), msg);
  }
}

/** The agent's logger (see the module comment). */
export function agentLogger(options: AgentLoggerOptions): Logger {
  const format = options.format ?? 'json';
  let write = options.write;
  if (!write) {
    const stderr = pino.destination({ fd: 2, sync: true });
    write = (line: string): void => {
      stderr.write(`${line}\n`);
    };
  }
  const sink = write;
  const stream = {
    write(chunk: string): void {
      for (const line of chunk.split('\n')) {
        if (line === '') continue;
        sink(format === 'text' ? textLine(line) : line);
      }
    },
  };
  return new AgentLogger(pino({ level: options.level, base: undefined }, stream), {});
}
