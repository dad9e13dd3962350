import type { TerminalSize } from '../../provider.js';

/** Most characters of an unfinished resize message kept before it is dropped as garbage. */
const MAX_RESIZE_BUFFER_CHARS = 4096;

/**
 * An async iterable fed by pushes, for a single consumer. Keeps at most `limit` unread values
 * (dropping the oldest): a consumer that stops reading cannot make it grow without bound.
 */
export class PushIterable<T> implements AsyncIterable<T> {
  readonly #limit: number;
  readonly #values: T[] = [];
  readonly #waiters: ((result: IteratorResult<T, undefined>) => void)[] = [];
  #ended = false;

  constructor(limit = 64) {
    this.#limit = limit;
  }

  push(value: T): void {
    if (this.#ended) return;
    const waiter = this.#waiters.shift();
    if (waiter !== undefined) {
      waiter({ value, done: false });
      return;
    }
    this.#values.push(value);
    if (this.#values.length > this.#limit) this.#values.shift();
  }

  /** Ends the iteration once the buffered values are read. Idempotent. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const waiter of this.#waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T, undefined> {
    return {
      next: () => {
        if (this.#values.length > 0) {
          return Promise.resolve({ value: this.#values.shift() as T, done: false });
        }
        if (this.#ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.#waiters.push(resolve));
      },
      return: () => {
        this.end();
        this.#values.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

/**
 * Splits the resize channel's text into JSON objects (`{"Width":80,"Height":24}`, usually one per
 * message and newline-terminated, but an object may span messages). Keys match without regard to
 * case, as Go's JSON decoder matches them; anything that is not a pair of 16-bit sizes is skipped.
 */
export class ResizeDecoder {
  #buffer = '';

  write(text: string): TerminalSize[] {
    this.#buffer += text;
    const sizes: TerminalSize[] = [];
    for (;;) {
      const start = this.#buffer.indexOf('{');
      if (start < 0) {
        this.#buffer = '';
        break;
      }
      const end = objectEnd(this.#buffer, start);
      if (end < 0) {
        this.#buffer = this.#buffer.slice(start);
        if (this.#buffer.length > MAX_RESIZE_BUFFER_CHARS) this.#buffer = '';
        break;
      }
      const size = parseSize(this.#buffer.slice(start, end));
      if (size !== undefined) sizes.push(size);
      this.#buffer = this.#buffer.slice(end);
    }
    return sizes;
  }
}

/** The index just past the object that opens at `start`, or -1 when it is incomplete. */
function objectEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{') {
      depth++;
    } else if (c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

function parseSize(json: string): TerminalSize | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  let width: unknown;
  let height: unknown;
  for (const [key, field] of Object.entries(value)) {
    const name = key.toLowerCase();
    if (name === 'width') width = field;
    else if (name === 'height') height = field;
  }
  if (!isUint16(width) || !isUint16(height)) return undefined;
  return { width, height };
}

function isUint16(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= 0xffff;
}
