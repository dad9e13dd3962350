/**
 * The logger the library writes to: a subset of pino's API, so a pino logger can be passed as is.
 * Objects come first, as in pino: `log.info({ pod: 'ns/name' }, 'created')`.
 */
export interface Logger {
  error(obj: object, msg?: string): void;
  error(msg: string): void;
  warn(obj: object, msg?: string): void;
  warn(msg: string): void;
  info(obj: object, msg?: string): void;
  info(msg: string): void;
  debug(obj: object, msg?: string): void;
  debug(msg: string): void;
  /** A logger that adds `bindings` to every line (node name, pod key, ...). */
  child(bindings: Record<string, unknown>): Logger;
}

const noop = (): void => undefined;

/** Discards everything. The default wherever a logger is optional. */
export const silentLogger: Logger = {
  error: noop,
  warn: noop,
  info: noop,
  debug: noop,
  child: () => silentLogger,
};
