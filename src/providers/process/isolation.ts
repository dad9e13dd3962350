/**
 * What a container must not see or change of the host, in its own mount namespace: the paths
 * it must not see (the agent's state directory, with every pod's volumes, logs and state, and
 * the dev cluster's PKI and kubeconfigs) are covered, after the container's volumes are bound
 * into place; with `readOnlyRootFilesystem` every mount it shares with the host becomes
 * read-only, save its volumes and the kernel's file systems.
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { isAbsolute, join, relative, resolve } from 'node:path';
import { shellQuote, type Tools } from './launch.js';

/**
 * The paths hidden from pods when the config names none: the dev cluster's state (its PKI and
 * admin kubeconfig) and the build cache, where `~` is the agent's home and `$VK_CACHE_DIR` is
 * dropped when unset. The agent's state directory is hidden whatever the config says.
 */
export const DEFAULT_HIDDEN_PATHS: readonly string[] = [
  '~/.local/state/virtual-kubelet',
  '~/.cache/virtual-kubelet',
  '$VK_CACHE_DIR',
];

/**
 * `paths` with a leading `~` made the agent's home and `$NAME`/`${NAME}` taken from `env`;
 * a path that names an unset variable, or is not absolute after that, is left out.
 */
export function expandHiddenPaths(
  paths: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  home: string = homedir(),
): string[] {
  const out: string[] = [];
  const reference = /\$\{(\w+)\}|\$(\w+)/g;
  for (const p of paths) {
    const names = [...p.matchAll(reference)].map((m) => m[1] ?? m[2] ?? '');
    if (names.some((n) => (env[n] ?? '') === '')) continue;
    let path = p.replace(reference, (_m, a?: string, b?: string) => env[a ?? b ?? ''] ?? '');
    if (path === '~' || path.startsWith('~/')) path = join(home, path.slice(1));
    if (!isAbsolute(path)) continue;
    out.push(resolve(path));
  }
  return [...new Set(out)];
}

/** Whether `path` is `root` or below it. */
export function isUnder(path: string, root: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/** A mountinfo field as the path it stands for (`\040` is a space, and so on). */
const unescape = (field: string): string =>
  field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));

/** The mount points of `pid`'s mount namespace, as its root sees them. */
export function mountPoints(pid: number | 'self'): string[] {
  const text = readFileSync(`/proc/${String(pid)}/mountinfo`, 'utf8');
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const field = line.split(' ')[4];
    if (field !== undefined) out.push(unescape(field));
  }
  return [...new Set(out)];
}

/** Kernel and runtime file systems that stay as they are in a read-only root. */
const WRITABLE_SYSTEM_MOUNTS = ['/proc', '/sys', '/dev', '/tmp'];

/**
 * The mount points to make read-only for `readOnlyRootFilesystem`: every one of `mounts`
 * except those at or below the container's volume targets, hidden paths and
 * /proc, /sys, /dev and /tmp; `/` first.
 */
export function readOnlyMounts(mounts: readonly string[], keep: readonly string[]): string[] {
  const skip = [...WRITABLE_SYSTEM_MOUNTS, ...keep];
  const out = mounts.filter((m) => m !== '/' && !skip.some((k) => isUnder(m, k)));
  return ['/', ...out.sort()];
}

/** How one hidden path is covered: an empty read-only tmpfs, or /dev/null over a file. */
export interface HiddenPath {
  readonly path: string;
  readonly file: boolean;
}

/** The paths of `paths` that exist, with what each is; missing ones have nothing to hide. */
export function existingHiddenPaths(paths: readonly string[]): HiddenPath[] {
  const out: HiddenPath[] = [];
  for (const path of paths) {
    try {
      out.push({ path, file: !statSync(path).isDirectory() });
    } catch {
      // Not there: nothing to hide.
    }
  }
  // Outermost first, so an inner path is not looked for below a tmpfs that hides it.
  return out.sort((a, b) => a.path.length - b.path.length);
}

/**
 * Shell lines (for the container's wrapper, in its mount namespace, after its volume mounts)
 * that make `readOnly` read-only and cover `hidden`. `fail` is the wrapper's function that
 * records a start error.
 */
export function isolationLines(
  readOnly: readonly string[],
  hidden: readonly HiddenPath[],
  tools: Tools,
): string[] {
  const q = shellQuote;
  const lines: string[] = [];
  for (const m of readOnly) {
    lines.push(
      `${q(tools.mount)} -o remount,bind,ro ${q(m)} || fail ${q(`cannot make ${m} read-only`)}`,
    );
  }
  for (const h of hidden) {
    if (hidden.some((o) => o !== h && !o.file && isUnder(h.path, o.path))) continue;
    const cover = h.file
      ? `${q(tools.mount)} --bind /dev/null ${q(h.path)}`
      : `${q(tools.mount)} -t tmpfs -o ro,nosuid,nodev,noexec,size=4k,mode=000 tmpfs ${q(h.path)}`;
    // A path the container does not see (under its private /tmp, say) needs no cover.
    lines.push(`if [ -e ${q(h.path)} ]; then ${cover} || fail ${q(`cannot hide ${h.path}`)}; fi`);
  }
  return lines;
}
