/**
 * Kubernetes resource quantities (`100m`, `1.5`, `128Mi`, `1G`, `1e3`), parsed exactly.
 *
 * The grammar is apimachinery's `resource.Quantity`: an optionally signed decimal number
 * (`1`, `1.`, `1.5`, `.5`) followed by one binary suffix (`Ki` … `Ei`), one decimal suffix
 * (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`) or a decimal exponent (`e3`, `E-2`).
 * Values are kept as a fraction of big integers so that rounding (`Value()`/`MilliValue()`
 * round up in Go) is exact: `0.1` CPU is 100 millicores, not 100.00000000000001.
 */
import { invalidInput } from '../errors.js';

/** An exact quantity: `numerator / denominator`, the denominator always positive. */
export interface ExactQuantity {
  readonly numerator: bigint;
  readonly denominator: bigint;
}

const BINARY_SUFFIXES: Readonly<Record<string, bigint>> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};

const DECIMAL_SUFFIXES: Readonly<Record<string, number>> = {
  n: -9,
  u: -6,
  m: -3,
  '': 0,
  k: 3,
  M: 6,
  G: 9,
  T: 12,
  P: 15,
  E: 18,
};

// A lone `E` is exa; `E` followed by digits is an exponent. The alternation order matters.
const QUANTITY =
  /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei)|[eE]([+-]?\d+)|([numkMGTPE]?))$/;

/**
 * Exponents beyond this are refused: no real quantity needs them, and `1e999999999` would
 * otherwise allocate a gigantic integer.
 */
const MAX_EXPONENT = 1000;

/** Parses `text` exactly. Throws an `InvalidInput` error when it is not a quantity. */
export function parseQuantityExact(text: string): ExactQuantity {
  const m = QUANTITY.exec(text);
  if (m === null) throw invalidInput(`invalid quantity ${JSON.stringify(text)}`);
  const [, sign = '', number = '', binary, exponentText, decimal] = m;
  const [whole = '', fraction = ''] = number.split('.');
  let numerator = BigInt(whole + fraction || '0');
  let denominator = 10n ** BigInt(fraction.length);
  if (binary !== undefined) {
    numerator *= BINARY_SUFFIXES[binary] ?? 1n;
  } else {
    const exponent =
      exponentText !== undefined ? Number(exponentText) : (DECIMAL_SUFFIXES[decimal ?? ''] ?? 0);
    if (Math.abs(exponent) > MAX_EXPONENT) {
      throw invalidInput(`quantity ${JSON.stringify(text)} is out of range`);
    }
    if (exponent >= 0) numerator *= 10n ** BigInt(exponent);
    else denominator *= 10n ** BigInt(-exponent);
  }
  if (sign === '-') numerator = -numerator;
  return { numerator, denominator };
}

/**
 * The value of `text` in base units (cores for CPU, bytes for memory) as a float. Use
 * {@link quantityValue} or {@link quantityMilliValue} where rounding must be exact.
 */
export function parseQuantity(text: string): number {
  const q = parseQuantityExact(text);
  return Number(q.numerator) / Number(q.denominator);
}

/** `q × scale`, rounded away from zero to an integer (Go's `inf.RoundUp`). */
function roundUpScaled(q: ExactQuantity, scale: bigint): bigint {
  const n = q.numerator * scale;
  const whole = n / q.denominator; // truncates toward zero
  if (whole * q.denominator === n) return whole;
  return n < 0n ? whole - 1n : whole + 1n;
}

function exact(q: string | ExactQuantity): ExactQuantity {
  return typeof q === 'string' ? parseQuantityExact(q) : q;
}

/** The value in whole base units, rounded up: Go's `Quantity.Value()`. */
export function quantityValue(q: string | ExactQuantity): bigint {
  return roundUpScaled(exact(q), 1n);
}

/** The value in thousandths of a base unit, rounded up: Go's `Quantity.MilliValue()`. */
export function quantityMilliValue(q: string | ExactQuantity): bigint {
  return roundUpScaled(exact(q), 1000n);
}

/** `a / b` for integers, rounded up (toward positive infinity). `b` must be positive. */
export function ceilDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return q * b === a || a < 0n ? q : q + 1n;
}
