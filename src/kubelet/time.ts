/**
 * Times and durations as Kubernetes and Go write them: `metav1.Time` (RFC 3339 at whole
 * seconds), `metav1.MicroTime` (six fractional digits), the kubelet's log timestamps
 * (`RFC3339NanoFixed`, nine digits) and Go's `time.Duration` strings in messages.
 */

/** `2024-05-01T12:00:00Z`: RFC 3339 at whole seconds (truncated), as a `metav1.Time`. */
export function formatRfc3339(time: Date | number): string {
  return new Date(time).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** `2024-05-01T12:00:00.123000Z`: RFC 3339 with six fractional digits, as a `metav1.MicroTime`. */
export function formatMicroTime(time: Date | number): string {
  return new Date(time).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/**
 * `2024-05-01T12:00:00.123000000Z`: RFC 3339 with exactly nine fractional digits (Go's
 * `RFC3339NanoFixed`), as the kubelet prefixes log lines. JavaScript times stop at milliseconds.
 */
export function formatRfc3339NanoFixed(time: Date | number): string {
  return new Date(time).toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

const NS_PER_US = 1e3;
const NS_PER_MS = 1e6;
const NS_PER_S = 1e9;
const NS_PER_MIN = 60 * NS_PER_S;
const NS_PER_H = 60 * NS_PER_MIN;

/**
 * A duration of `durationMs` milliseconds (fractions down to nanoseconds) as Go's
 * `time.Duration.String()` prints it: `0s`, `1.5µs`, `200ms`, `1.5s`, `1m30s`, `2h0m0s`, `-5s`.
 */
export function formatGoDuration(durationMs: number): string {
  const ns = Math.round(Math.abs(durationMs) * NS_PER_MS);
  const sign = durationMs < 0 && ns > 0 ? '-' : '';
  if (ns === 0) return '0s';
  if (ns < NS_PER_US) return `${sign}${String(ns)}ns`;
  if (ns < NS_PER_MS) return `${sign}${decimal(ns, NS_PER_US)}µs`;
  if (ns < NS_PER_S) return `${sign}${decimal(ns, NS_PER_MS)}ms`;
  const hours = Math.floor(ns / NS_PER_H);
  const minutes = Math.floor((ns % NS_PER_H) / NS_PER_MIN);
  const seconds = `${decimal(ns % NS_PER_MIN, NS_PER_S)}s`;
  if (hours > 0) return `${sign}${String(hours)}h${String(minutes)}m${seconds}`;
  if (minutes > 0) return `${sign}${String(minutes)}m${seconds}`;
  return sign + seconds;
}

/** `value / scale` (an integer ratio, `scale` a power of ten) without trailing zeros. */
function decimal(value: number, scale: number): string {
  const whole = Math.floor(value / scale);
  const fraction = value % scale;
  if (fraction === 0) return String(whole);
  const digits = String(fraction)
    .padStart(String(scale).length - 1, '0')
    .replace(/0+$/, '');
  return `${String(whole)}.${digits}`;
}
