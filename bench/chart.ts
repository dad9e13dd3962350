// `chart`: a small hand-written SVG of rollout seconds (median, create to all Running) against N,
// one line per system, log-log, from the JSON files `rollout` writes.
//
//   npm run bench -- chart [--from 'bench/results/*-rollout-*.json' ...] [FILE ...] [--out docs/rollout.svg]
import { readdir, readFile, writeFile, mkdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { say } from './util.js';

interface ResultFile {
  readonly scenario: string;
  readonly n: number;
  readonly date?: string;
  readonly machine?: { readonly cpus?: number };
  readonly systems: Readonly<
    Record<
      string,
      { readonly seconds?: number | null; readonly runs?: readonly { ok?: boolean }[] }
    >
  >;
}

interface Point {
  readonly n: number;
  readonly seconds: number;
  readonly runs: number;
  /** Day of the result, for the tooltip. */
  readonly date: string;
  /** Full time of the result: the newest wins among equals. */
  readonly at: string;
}

const COLORS: Readonly<Record<string, string>> = {
  ours: '#1f5fbf',
  'go-vk': '#e8740c',
  'go-vk-tuned': '#f2b36b',
  kwok: '#2e9b45',
  limit: '#6b6b6b',
};
const ORDER = ['ours', 'go-vk', 'go-vk-tuned', 'kwok', 'limit'];

/** Expands `*` and `?` in the file name part of a path (what a shell would, for one folder). */
async function expand(pattern: string): Promise<string[]> {
  const name = basename(pattern);
  if (!/[*?]/.test(name)) return [pattern];
  const dir = dirname(pattern);
  const re = new RegExp(
    `^${name
      .split('')
      .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
      .join('')}$`,
  );
  const names = await readdir(dir).catch(() => []);
  return names
    .filter((f) => re.test(f))
    .sort()
    .map((f) => join(dir, f));
}

const esc = (s: string): string =>
  s.replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;');

function niceSeconds(s: number): string {
  if (s >= 100) return s.toFixed(0);
  if (s >= 10) return s.toFixed(1);
  return s.toFixed(2);
}

/** Renders the chart; `series` maps a system to its points, sorted by N. */
export function renderSvg(series: ReadonlyMap<string, readonly Point[]>, note: string): string {
  const W = 680;
  const H = 420;
  const left = 64;
  const right = 150;
  const top = 48;
  const bottom = 56;
  const all = [...series.values()].flat();
  const ns = all.map((p) => p.n);
  const ss = all.map((p) => p.seconds);
  const xMin = Math.log10(Math.min(...ns)) - 0.15;
  const xMax = Math.log10(Math.max(...ns)) + 0.15;
  const yMin = Math.floor(Math.log10(Math.min(...ss)));
  const yMax = Math.ceil(Math.log10(Math.max(...ss)));
  const x = (n: number): number =>
    left + ((Math.log10(n) - xMin) / Math.max(xMax - xMin, 1e-9)) * (W - left - right);
  const y = (s: number): number =>
    H - bottom - ((Math.log10(s) - yMin) / Math.max(yMax - yMin, 1)) * (H - top - bottom);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${String(W)}" height="${String(H)}" viewBox="0 0 ${String(W)} ${String(H)}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${String(W)}" height="${String(H)}" fill="#ffffff"/>`,
    `<text x="${String(left)}" y="20" font-size="15" font-weight="bold">rollout: N pods from first create to all Running</text>`,
    `<text x="${String(left)}" y="37" fill="#555">${esc(note)}</text>`,
  );
  // Grid and y labels: 1, 2, 5 per decade.
  for (let d = yMin; d <= yMax; d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (Math.log10(v) > yMax + 1e-9) continue;
      const yy = y(v).toFixed(1);
      out.push(
        `<line x1="${String(left)}" x2="${String(W - right)}" y1="${yy}" y2="${yy}" stroke="${m === 1 ? '#d0d0d0' : '#eeeeee'}"/>`,
        `<text x="${String(left - 6)}" y="${yy}" text-anchor="end" dominant-baseline="middle" fill="#333">${esc(v >= 1 ? String(v) : v.toPrecision(1))}</text>`,
      );
    }
  }
  for (const n of [...new Set(ns)].sort((a, b) => a - b)) {
    const xx = x(n).toFixed(1);
    out.push(
      `<line x1="${xx}" x2="${xx}" y1="${String(top)}" y2="${String(H - bottom)}" stroke="#eeeeee"/>`,
      `<text x="${xx}" y="${String(H - bottom + 16)}" text-anchor="middle" fill="#333">${n.toLocaleString('en-US')}</text>`,
    );
  }
  out.push(
    `<rect x="${String(left)}" y="${String(top)}" width="${String(W - left - right)}" height="${String(H - top - bottom)}" fill="none" stroke="#888"/>`,
    `<text x="${String((left + W - right) / 2)}" y="${String(H - 14)}" text-anchor="middle">pods (N, log scale)</text>`,
    `<text transform="translate(16 ${String((top + H - bottom) / 2)}) rotate(-90)" text-anchor="middle">seconds (median, log scale)</text>`,
  );
  const names = [...series.keys()].sort(
    (a, b) => (ORDER.indexOf(a) + 1 || 99) - (ORDER.indexOf(b) + 1 || 99),
  );
  // Each legend entry: the name, then one line per point.
  const legendOffset = (i: number): number =>
    names.slice(0, i).reduce((sum, n) => sum + 20 + (series.get(n)?.length ?? 0) * 11, 0);
  names.forEach((name, i) => {
    const pts = series.get(name) ?? [];
    const color = COLORS[name] ?? '#9467bd';
    const dash = name === 'limit' ? ' stroke-dasharray="5 4"' : '';
    const width = name === 'ours' ? 3 : 2;
    if (pts.length > 1)
      out.push(
        `<polyline fill="none" stroke="${color}" stroke-width="${String(width)}"${dash} points="${pts.map((p) => `${x(p.n).toFixed(1)},${y(p.seconds).toFixed(1)}`).join(' ')}"/>`,
      );
    for (const p of pts)
      out.push(
        `<circle cx="${x(p.n).toFixed(1)}" cy="${y(p.seconds).toFixed(1)}" r="4" fill="${color}"><title>${esc(`${name}, N=${String(p.n)}: ${niceSeconds(p.seconds)} s (median of ${String(p.runs)} run(s), ${p.date})`)}</title></circle>`,
      );
    const ly = top + 14 + legendOffset(i);
    const lx = W - right + 14;
    out.push(
      `<line x1="${String(lx)}" x2="${String(lx + 22)}" y1="${String(ly)}" y2="${String(ly)}" stroke="${color}" stroke-width="${String(width)}"${dash}/>`,
      `<text x="${String(lx + 28)}" y="${String(ly)}" dominant-baseline="middle">${esc(name)}</text>`,
      ...pts.map(
        (p, k) =>
          `<text x="${String(lx + 28)}" y="${String(ly + 12 + k * 11)}" dominant-baseline="middle" font-size="10" fill="#555">${esc(`N=${p.n.toLocaleString('en-US')}: ${niceSeconds(p.seconds)} s`)}</text>`,
      ),
    );
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

export async function chart(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      from: { type: 'string', multiple: true },
      out: { type: 'string', default: 'docs/rollout.svg' },
    },
  });
  const patterns = [...(values.from ?? []), ...positionals];
  if (patterns.length === 0) patterns.push('bench/results/*-rollout-*.json');
  const files = (await Promise.all(patterns.map(expand))).flat();
  // Per system and N, the result with the most completed runs (then the newest).
  const best = new Map<string, Map<number, Point>>();
  const dates = new Set<string>();
  let cpus: number | undefined;
  for (const file of files) {
    const data = JSON.parse(await readFile(file, 'utf8')) as ResultFile;
    if (data.scenario !== 'rollout') continue;
    const date = (data.date ?? '').slice(0, 10);
    cpus ??= data.machine?.cpus;
    for (const [name, r] of Object.entries(data.systems)) {
      if (typeof r.seconds !== 'number') continue;
      const p: Point = {
        n: data.n,
        seconds: r.seconds,
        runs: r.runs?.filter((x) => x.ok !== false).length ?? 1,
        date,
        at: data.date ?? '',
      };
      const bySize = best.get(name) ?? new Map<number, Point>();
      const old = bySize.get(data.n);
      if (!old || p.runs > old.runs || (p.runs === old.runs && p.at >= old.at))
        bySize.set(data.n, p);
      best.set(name, bySize);
      dates.add(date);
    }
  }
  const series = new Map<string, Point[]>();
  for (const [name, bySize] of best)
    series.set(
      name,
      [...bySize.values()].sort((a, b) => a.n - b.n),
    );
  if (series.size === 0) {
    say(`no rollout results in ${patterns.join(' ')}`);
    return 1;
  }
  const span = [...dates].sort();
  const note = `same apiserver, systems interleaved; ${cpus === undefined ? '' : `${String(cpus)} CPUs; `}${span[0] ?? ''}${span.length > 1 ? ` to ${span[span.length - 1] ?? ''}` : ''}; ${files.length === 1 ? '1 result file' : `${String(files.length)} result files`}`;
  await mkdir(dirname(values.out), { recursive: true });
  await writeFile(values.out, renderSvg(series, note));
  say(
    `wrote ${values.out} (${[...series.keys()].join(', ')}; N = ${[...new Set([...best.values()].flatMap((m) => [...m.keys()]))].sort((a, b) => a - b).join(', ')})`,
  );
  return 0;
}
