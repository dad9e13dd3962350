/**
 * The commands a mock container can run, in-process: enough of a busybox for tests and for
 * trying `kubectl exec` against a dev cluster. Streams belong to the caller: commands read and
 * write them with back-pressure and never end them.
 *
 * | command                | does                                                            |
 * |------------------------|-----------------------------------------------------------------|
 * | `echo [-n] ARGS...`    | prints the arguments joined by spaces                            |
 * | `cat [-]`              | copies stdin to stdout until stdin ends                          |
 * | `head -c N`            | copies the first N bytes of stdin                                |
 * | `sh -c SCRIPT`         | runs a script: `;`, `&&`, `\|\|`, quotes, `$VAR`, `$?`, `exit N`  |
 * | `sh`                   | runs stdin line by line as scripts (a prompt and echo with a tty) |
 * | `env`, `printenv [N]`  | the container's environment, from the pod spec                   |
 * | `hostname`             | the pod's hostname (`spec.hostname`, else its name)              |
 * | `stty size`, `tty-size`| "ROWS COLUMNS" of the terminal; waits up to 2 s for a first size |
 * | `sleep SECONDS`        | waits                                                            |
 * | `true`, `false`        | exit 0, exit 1                                                   |
 * | `yes [WORD]`           | prints WORD (default `y`) lines until stdout is gone             |
 *
 * A command is found by the last part of its path (`/bin/sh` is `sh`). Anything else prints
 * `mock: <cmd>: command not found` and exits 127. With a tty, stderr goes to stdout and `\n`
 * is written as `\r\n`, as a terminal would.
 */
import { StringDecoder } from 'node:string_decoder';
import type { Readable, Writable } from 'node:stream';
import { setImmediate as yieldToEventLoop, setTimeout as delay } from 'node:timers/promises';
import type { TerminalSize } from '../../provider.js';
import { aborted, nextChunk, write } from './streams.js';

/** How long `stty size` waits for the client's first terminal size. */
const FIRST_SIZE_TIMEOUT_MS = 2000;
/** The exit code of a command that was killed (128 + SIGKILL). */
export const KILLED_EXIT_CODE = 137;

/**
 * Follows the terminal sizes of a session; the latest one is what `stty size` prints. Consumes
 * `resize` until `close()` or until it ends.
 */
export class TerminalSizes {
  #latest: TerminalSize | undefined;
  #done = false;
  readonly #waiters = new Set<() => void>();
  readonly #iterator: AsyncIterator<TerminalSize>;

  constructor(resize: AsyncIterable<TerminalSize>) {
    this.#iterator = resize[Symbol.asyncIterator]();
    void this.#consume();
  }

  get latest(): TerminalSize | undefined {
    return this.#latest;
  }

  /** The latest size; when there is none yet, the first within `timeoutMs`, else undefined. */
  async current(timeoutMs: number, signal: AbortSignal): Promise<TerminalSize | undefined> {
    if (this.#latest !== undefined || this.#done || signal.aborted) return this.#latest;
    await new Promise<void>((resolve) => {
      const wake = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        signal.removeEventListener('abort', wake);
        resolve();
      };
      // A session in progress: its timers are bounded and end with it, so they stay ref'd.
      const timer = setTimeout(wake, timeoutMs);
      this.#waiters.add(wake);
      signal.addEventListener('abort', wake, { once: true });
    });
    return this.#latest;
  }

  /** Stops consuming sizes. Idempotent. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#wake();
    // A pending next() settles later; its result is ignored.
    this.#iterator.return?.().catch(() => undefined);
  }

  async #consume(): Promise<void> {
    try {
      while (!this.#done) {
        const result = await this.#iterator.next();
        if (result.done === true) break;
        this.#latest = result.value;
        this.#wake();
      }
    } catch {
      // The session's resize stream failed; the sizes known so far stay.
    } finally {
      this.#done = true;
      this.#wake();
    }
  }

  #wake(): void {
    for (const wake of [...this.#waiters]) wake();
  }
}

/** What a command sees of its container and session. */
export interface ExecContext {
  readonly hostname: string;
  /** The container's environment, resolved by the core. */
  readonly env: ReadonlyMap<string, string>;
  readonly stdin: Readable | undefined;
  readonly stdout: Writable | undefined;
  readonly stderr: Writable | undefined;
  readonly tty: boolean;
  readonly sizes: TerminalSizes | undefined;
  /** Fires when the session ends or the container stops; commands return soon after. */
  readonly signal: AbortSignal;
}

type Command = (args: readonly string[], ctx: ExecContext) => Promise<number>;

const terminal = (ctx: ExecContext, text: string): string =>
  ctx.tty ? text.replace(/\r?\n/g, '\r\n') : text;

/** Writes text to stdout; false when stdout is gone. */
const print = (ctx: ExecContext, text: string): Promise<boolean> =>
  write(ctx.stdout, terminal(ctx, text), ctx.signal);

/** Writes text to stderr, or to stdout with a tty. */
const printError = (ctx: ExecContext, text: string): Promise<boolean> =>
  write(ctx.tty ? ctx.stdout : ctx.stderr, terminal(ctx, text), ctx.signal);

async function cat(args: readonly string[], ctx: ExecContext): Promise<number> {
  const files = args.filter((a) => a !== '-');
  if (files.length > 0) {
    for (const file of files) await printError(ctx, `cat: can't open '${file}': No such file\n`);
    return 1;
  }
  const stdin = ctx.stdin;
  if (stdin === undefined) return 0;
  for (;;) {
    const chunk = await nextChunk(stdin, ctx.signal);
    if (chunk === undefined) return 0;
    if (!(await write(ctx.stdout, chunk, ctx.signal))) return 1;
  }
}

async function head(args: readonly string[], ctx: ExecContext): Promise<number> {
  const given = args[0] === '-c' ? args[1] : args[0]?.startsWith('-c') ? args[0].slice(2) : '';
  const count = Number(given);
  if (given === undefined || given === '' || !Number.isSafeInteger(count) || count < 0) {
    await printError(ctx, 'mock: head: only "head -c BYTES" is supported\n');
    return 1;
  }
  const stdin = ctx.stdin;
  let remaining = count;
  while (stdin !== undefined && remaining > 0) {
    let chunk = await nextChunk(stdin, ctx.signal);
    if (chunk === undefined) break;
    if (chunk.length > remaining) {
      // What head does not read stays for whoever reads next.
      stdin.unshift(chunk.subarray(remaining));
      chunk = chunk.subarray(0, remaining);
    }
    remaining -= chunk.length;
    if (!(await write(ctx.stdout, chunk, ctx.signal))) return 1;
  }
  return 0;
}

async function size(ctx: ExecContext, what: string): Promise<number> {
  const current = ctx.tty ? await ctx.sizes?.current(FIRST_SIZE_TIMEOUT_MS, ctx.signal) : undefined;
  if (current === undefined) {
    await printError(
      ctx,
      ctx.tty ? `mock: ${what}: no terminal size known\n` : `${what}: standard input: Not a tty\n`,
    );
    return 1;
  }
  await print(ctx, `${String(current.height)} ${String(current.width)}\n`);
  return 0;
}

async function sleep(args: readonly string[], ctx: ExecContext): Promise<number> {
  const text = args[0] ?? '';
  const seconds = Number(text.endsWith('s') ? text.slice(0, -1) : text);
  if (text === '' || !Number.isFinite(seconds) || seconds < 0) {
    await printError(ctx, `sleep: invalid number '${text}'\n`);
    return 1;
  }
  // Unlike the provider's own timers this one is ref'd, as a session in progress: it ends with
  // the session, the container or close().
  await delay(seconds * 1000, undefined, { signal: ctx.signal }).catch(() => undefined);
  return 0;
}

async function yes(args: readonly string[], ctx: ExecContext): Promise<number> {
  if (ctx.stdout === undefined) {
    await aborted(ctx.signal);
    return 0;
  }
  const line = terminal(ctx, `${args.length > 0 ? args.join(' ') : 'y'}\n`);
  const block = line.repeat(Math.max(1, Math.floor(65_536 / line.length)));
  while (await write(ctx.stdout, block, ctx.signal)) {
    // A fast reader never pushes back; let timers and I/O (an abort, say) run between blocks.
    await yieldToEventLoop();
  }
  return 1;
}

const COMMANDS: ReadonlyMap<string, Command> = new Map<string, Command>([
  [
    'echo',
    async (args, ctx) => {
      const newline = args[0] !== '-n';
      await print(ctx, `${(newline ? args : args.slice(1)).join(' ')}${newline ? '\n' : ''}`);
      return 0;
    },
  ],
  ['cat', cat],
  ['head', head],
  ['sh', (args, ctx) => shell(args, ctx)],
  [
    'env',
    async (_args, ctx) => {
      await print(ctx, [...ctx.env].map(([name, value]) => `${name}=${value}\n`).join(''));
      return 0;
    },
  ],
  [
    'printenv',
    async (args, ctx) => {
      if (args.length === 0) return run(['env'], ctx);
      let code = 0;
      for (const name of args) {
        const value = ctx.env.get(name);
        if (value === undefined) code = 1;
        else await print(ctx, `${value}\n`);
      }
      return code;
    },
  ],
  [
    'hostname',
    async (_args, ctx) => {
      await print(ctx, `${ctx.hostname}\n`);
      return 0;
    },
  ],
  [
    'stty',
    async (args, ctx) => {
      if (args.length === 1 && args[0] === 'size') return size(ctx, 'stty');
      await printError(ctx, 'mock: stty: only "stty size" is supported\n');
      return 1;
    },
  ],
  ['tty-size', (_args, ctx) => size(ctx, 'tty-size')],
  ['sleep', sleep],
  ['true', () => Promise.resolve(0)],
  ['false', () => Promise.resolve(1)],
  ['yes', yes],
]);

/** Runs `argv` and resolves to its exit code; `argv[0]` is the command. */
export async function run(argv: readonly string[], ctx: ExecContext): Promise<number> {
  const [path = '', ...args] = argv;
  const name = path.slice(path.lastIndexOf('/') + 1);
  const command = COMMANDS.get(name);
  if (command === undefined) {
    await printError(ctx, `mock: ${path}: command not found\n`);
    return 127;
  }
  return command(args, ctx);
}

// --- sh -------------------------------------------------------------------------------------

/** A piece of a word: literal text, or a variable to expand when the command runs. */
type Segment = string | { readonly variable: string };

interface Step {
  /** How the step depends on the one before: always, after a success, after a failure. */
  readonly op: ';' | '&&' | '||';
  readonly words: readonly (readonly Segment[])[];
}

class ScriptError extends Error {}

const NAME_START = /[A-Za-z_]/;
const NAME_PART = /[A-Za-z0-9_]/;

/**
 * Splits a script into simple commands joined by `;`, newlines, `&&` and `||`; handles single
 * and double quotes, backslashes, comments and `$NAME`, `${NAME}`, `$?`. Pipes, redirections,
 * background jobs, subshells and command substitution throw a `ScriptError`.
 */
export function parseScript(script: string): Step[] {
  const steps: Step[] = [];
  let words: Segment[][] = [];
  let word: Segment[] | undefined;
  let op: Step['op'] = ';';
  let i = 0;

  const text = (value: string): void => {
    word ??= [];
    const last = word.at(-1);
    if (typeof last === 'string') word[word.length - 1] = last + value;
    else word.push(value);
  };
  const endWord = (): void => {
    if (word !== undefined) words.push(word);
    word = undefined;
  };
  const endStep = (next: Step['op']): void => {
    endWord();
    if (words.length > 0) steps.push({ op, words });
    else if (op !== ';' || next !== ';') throw new ScriptError(`syntax error near "${next}"`);
    words = [];
    op = next;
  };
  // `$` at script[i]: a variable, or a literal dollar sign.
  const dollar = (): void => {
    const c = script[i + 1] ?? '';
    if (c === '?') {
      (word ??= []).push({ variable: '?' });
      i += 2;
    } else if (c === '{') {
      const close = script.indexOf('}', i + 2);
      const name = close < 0 ? '' : script.slice(i + 2, close);
      if (!/^[A-Za-z_][A-Za-z0-9_]*$|^\?$/.test(name)) throw new ScriptError('bad substitution');
      (word ??= []).push({ variable: name });
      i = close + 1;
    } else if (c === '(') {
      throw new ScriptError('command substitution is not supported');
    } else if (NAME_START.test(c)) {
      let end = i + 1;
      while (end < script.length && NAME_PART.test(script[end] ?? '')) end += 1;
      (word ??= []).push({ variable: script.slice(i + 1, end) });
      i = end;
    } else {
      text('$');
      i += 1;
    }
  };

  while (i < script.length) {
    const c = script[i] ?? '';
    if (c === ' ' || c === '\t') {
      endWord();
      i += 1;
    } else if (c === '\n' || c === ';') {
      endStep(';');
      i += 1;
    } else if (script.startsWith('&&', i) || script.startsWith('||', i)) {
      endStep(c === '&' ? '&&' : '||');
      i += 2;
    } else if ('|&<>()`'.includes(c)) {
      throw new ScriptError(`"${c}" is not supported`);
    } else if (c === '#' && word === undefined) {
      const newline = script.indexOf('\n', i);
      i = newline < 0 ? script.length : newline;
    } else if (c === "'") {
      const close = script.indexOf("'", i + 1);
      if (close < 0) throw new ScriptError('unterminated quoted string');
      text(script.slice(i + 1, close));
      i = close + 1;
    } else if (c === '"') {
      text('');
      i += 1;
      for (;;) {
        const d = script[i];
        if (d === undefined) throw new ScriptError('unterminated quoted string');
        if (d === '"') {
          i += 1;
          break;
        }
        if (d === '\\' && '$`"\\\n'.includes(script[i + 1] ?? 'x')) {
          if (script[i + 1] !== '\n') text(script[i + 1] ?? '');
          i += 2;
        } else if (d === '$') {
          dollar();
        } else if (d === '`') {
          throw new ScriptError('command substitution is not supported');
        } else {
          text(d);
          i += 1;
        }
      }
    } else if (c === '\\') {
      if (script[i + 1] !== '\n') text(script[i + 1] ?? '');
      i += 2;
    } else if (c === '$') {
      dollar();
    } else {
      text(c);
      i += 1;
    }
  }
  endStep(';');
  return steps;
}

interface ScriptResult {
  readonly status: number;
  /** Whether the script ran `exit`. */
  readonly exited: boolean;
}

async function runScript(script: string, ctx: ExecContext, status: number): Promise<ScriptResult> {
  let steps: Step[];
  try {
    steps = parseScript(script);
  } catch (err) {
    if (!(err instanceof ScriptError)) throw err;
    await printError(ctx, `sh: ${err.message}\n`);
    return { status: 2, exited: false };
  }
  for (const step of steps) {
    if (ctx.signal.aborted) break;
    if ((step.op === '&&' && status !== 0) || (step.op === '||' && status === 0)) continue;
    const argv = step.words.map((word) =>
      word
        .map((s) =>
          typeof s === 'string'
            ? s
            : s.variable === '?'
              ? String(status)
              : (ctx.env.get(s.variable) ?? ''),
        )
        .join(''),
    );
    if (argv[0] === 'exit') {
      const given = argv[1];
      if (given === undefined) return { status, exited: true };
      const code = Number(given);
      if (!/^\d+$/.test(given) || !Number.isSafeInteger(code)) {
        await printError(ctx, `sh: exit: Illegal number: ${given}\n`);
        return { status: 2, exited: true };
      }
      return { status: code % 256, exited: true };
    }
    status = await run(argv, ctx);
  }
  return { status, exited: false };
}

async function shell(args: readonly string[], ctx: ExecContext): Promise<number> {
  if (args[0] === '-c') {
    const script = args[1];
    if (script === undefined) {
      await printError(ctx, 'sh: -c requires an argument\n');
      return 2;
    }
    return (await runScript(script, ctx, 0)).status;
  }
  if (args.length > 0) {
    await printError(ctx, 'mock: sh: only "sh -c SCRIPT" and "sh" reading stdin are supported\n');
    return 2;
  }
  return interactive(ctx);
}

/**
 * `sh` without arguments: runs every line of stdin as a script. With a tty it behaves like a
 * terminal in cooked mode: a `$ ` prompt, typed characters echoed, backspace, ^C and ^D. The
 * commands it runs get no stdin (the shell reads it).
 */
async function interactive(ctx: ExecContext): Promise<number> {
  const stdin = ctx.stdin;
  if (stdin === undefined) return 0;
  const inner: ExecContext = { ...ctx, stdin: undefined };
  const decoder = new StringDecoder('utf8');
  let status = 0;
  let line = '';
  let lastWasCR = false;
  const prompt = (): Promise<boolean> => (ctx.tty ? print(ctx, '$ ') : Promise.resolve(true));
  const runLine = async (): Promise<boolean> => {
    const script = line;
    line = '';
    const result = await runScript(script, inner, status);
    status = result.status;
    return result.exited || ctx.signal.aborted;
  };

  await prompt();
  for (;;) {
    const chunk = await nextChunk(stdin, ctx.signal);
    if (chunk === undefined) break;
    for (const c of decoder.write(chunk)) {
      const crlf = lastWasCR && c === '\n';
      lastWasCR = c === '\r';
      if (crlf) continue;
      if (c === '\r' || c === '\n') {
        if (ctx.tty) await print(ctx, '\n');
        if (await runLine()) return status;
        await prompt();
      } else if (!ctx.tty) {
        line += c;
      } else if (c === '\u007f' || c === '\b') {
        if (line.length > 0) {
          line = line.slice(0, -1);
          await write(ctx.stdout, '\b \b', ctx.signal);
        }
      } else if (c === '\u0003') {
        line = '';
        await print(ctx, '^C\n');
        await prompt();
      } else if (c === '\u0004') {
        if (line === '') {
          await print(ctx, 'exit\n');
          return status;
        }
      } else {
        line += c;
        await write(ctx.stdout, c, ctx.signal);
      }
    }
  }
  line += decoder.end();
  if (line !== '' && !ctx.signal.aborted) await runLine();
  return status;
}
