// Small helpers shared by the scenarios.

export const say = (line: string): void => {
  process.stderr.write(`[bench] ${line}\n`);
};

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? (s[m] ?? 0) : ((s[m - 1] ?? 0) + (s[m] ?? 0)) / 2;
}

/** The value below which `p` percent of `xs` fall (nearest rank). */
export function percentile(xs: readonly number[], p: number): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank] ?? 0;
}

/** Median of the defined values, or undefined when there are none. */
export function medianOf(xs: readonly (number | undefined)[]): number | undefined {
  const defined = xs.filter((x): x is number => x !== undefined && Number.isFinite(x));
  return defined.length > 0 ? median(defined) : undefined;
}

/** Left-aligned first column, right-aligned others. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows)
    row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export const fixed = (x: number | undefined, digits = 1): string =>
  x === undefined ? '-' : x.toFixed(digits);

export const mib = (bytes: number | undefined): string =>
  bytes === undefined ? '-' : `${(bytes / 1024 / 1024).toFixed(0)} MiB`;

/** Runs `worker(i)` for i in [0, count) with at most `concurrency` at once. */
export async function forEachConcurrent(
  count: number,
  concurrency: number,
  worker: (i: number) => Promise<void>,
): Promise<void> {
  let next = 0;
  const lanes = Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      const i = next++;
      await worker(i);
    }
  });
  await Promise.all(lanes);
}

/** a / b, or undefined when either is unknown or b is 0. */
export const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;

/** A ratio with two decimals, or two significant digits when it is below 0.1. */
export const ratioText = (r: number | undefined): string =>
  r === undefined ? '-' : r >= 0.1 ? r.toFixed(2) : r.toPrecision(2);
