/**
 * How a container becomes a command line: the argv from `command`/`args` and the image table,
 * its environment, and the shell wrapper that joins the pod's namespaces and cgroups, mounts the
 * container's volumes and records the exit status in a file (so a status is known even when the
 * agent was down when the process ended).
 *
 * The process tree of a running container, every process in its own session, none of them a
 * child of the agent once the agent restarts:
 *
 *     sh (wrapper: waits, writes the exit code)           host namespaces, own session
 *      `- nsenter --target <pod init> (waits)            host pid namespace
 *          `- sh (mounts, cd) -> setsid -> [setpriv ->] command
 *                                                         pod namespaces, new session + group
 *
 * Without namespaces the nsenter step is left out. Signals go to the command's process group,
 * which is neither the wrapper's nor nsenter's, so the wrapper survives to write the status.
 */
import type { V1Container, V1EnvVar, V1Pod } from '../../wire.js';
import { accessSync, constants, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { DEFAULT_IMAGES, type ImageEntrypoint } from './config.js';
import { expandEnvValue } from '../../kubelet/env-expansion.js';
import { isolationLines, type HiddenPath } from './isolation.js';
import { setprivOptions, type Privileges } from './security.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** A POSIX shell word that stands for `s` exactly. */
export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Linux's limit on one argument or environment string of execve(2) (MAX_ARG_STRLEN), with its NUL. */
export const MAX_EXEC_STRING_BYTES = 128 * 1024;
/**
 * The arguments and environment of one container together, in bytes: Linux allows a quarter of
 * the stack limit (2 MiB with the usual 8 MiB), less what the wrapper's own arguments take.
 */
export const MAX_EXEC_TOTAL_BYTES = 2 * 1024 * 1024 - 128 * 1024;

/**
 * Why a container of `pod` can never be started as a process (an argument or environment string
 * longer than Linux allows, or all of them together); undefined when none.
 */
export function processLimitProblem(pod: V1Pod): string | undefined {
  const spec = pod.spec;
  const groups = [
    ['initContainers', spec?.initContainers ?? []],
    ['containers', spec?.containers ?? []],
  ] as const;
  for (const [field, containers] of groups) {
    for (const [i, c] of containers.entries()) {
      const path = `spec.${field}[${String(i)}]`;
      let total = 0;
      const strings: [string, string][] = [
        ...(c.command ?? []).map((s, j): [string, string] => [`command[${String(j)}]`, s]),
        ...(c.args ?? []).map((s, j): [string, string] => [`args[${String(j)}]`, s]),
        ...(c.env ?? []).map((e, j): [string, string] => [
          `env[${String(j)}]`,
          `${e.name}=${e.value ?? ''}`,
        ]),
      ];
      for (const [where, text] of strings) {
        const bytes = Buffer.byteLength(text) + 1;
        total += bytes;
        if (bytes > MAX_EXEC_STRING_BYTES)
          return `${path}.${where}: Too long: ${String(bytes)} bytes, a process argument or environment string may have at most ${String(MAX_EXEC_STRING_BYTES)}`;
      }
      if (total > MAX_EXEC_TOTAL_BYTES)
        return `${path}: Too long: its arguments and environment take ${String(total)} bytes, at most ${String(MAX_EXEC_TOTAL_BYTES)} fit a process`;
    }
  }
  return undefined;
}

/** The entry of `image` in the table: by exact name, by name without tag or digest, by glob. */
export function lookupImage(
  image: string,
  table: Readonly<Record<string, ImageEntrypoint>> = DEFAULT_IMAGES,
): ImageEntrypoint | undefined {
  const exact = table[image];
  if (exact) return exact;
  const noDigest = image.split('@')[0] ?? image;
  const lastSlash = noDigest.lastIndexOf('/');
  const colon = noDigest.lastIndexOf(':');
  const noTag = colon > lastSlash ? noDigest.slice(0, colon) : noDigest;
  const short = noTag.replace(/^(docker\.io\/)?(library\/)?/, '');
  for (const name of [noTag, short]) {
    const e = table[name];
    if (e) return e;
  }
  for (const [pattern, entry] of Object.entries(table)) {
    if (!pattern.includes('*')) continue;
    const re = new RegExp(
      `^${pattern
        .split('*')
        .map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('.*')}$`,
    );
    if (re.test(image) || re.test(noTag) || re.test(short)) return entry;
  }
  return undefined;
}

/**
 * `$(NAME)` references in command and args, expanded from the container's env as the kubelet
 * does: `$$` escapes, unknown names stay as written.
 */
export function expandReferences(text: string, env: ReadonlyMap<string, string>): string {
  return expandEnvValue(text, (name) => env.get(name));
}

/** The container's environment as the process gets it: env from the spec over defaults. */
export function containerEnv(container: V1Container, hostname: string): Map<string, string> {
  const env = new Map<string, string>([
    ['PATH', DEFAULT_PATH],
    ['HOSTNAME', hostname],
    ['HOME', '/root'],
  ]);
  for (const e of container.env ?? ([] as V1EnvVar[])) env.set(e.name, e.value ?? '');
  return env;
}

export type ResolvedCommand =
  { readonly argv: readonly string[]; readonly workingDir?: string } | { readonly error: string };

/**
 * The argv of the container, as a runtime would build it from the image: `command` replaces
 * the entrypoint, `args` the cmd (and a `command` alone drops the image's cmd).
 */
export function resolveCommand(
  container: V1Container,
  env: ReadonlyMap<string, string>,
  table: Readonly<Record<string, ImageEntrypoint>>,
): ResolvedCommand {
  const image = lookupImage(container.image ?? '', table);
  const entrypoint = container.command ?? image?.entrypoint ?? [];
  const cmd = container.args ?? (container.command !== undefined ? [] : (image?.cmd ?? []));
  const argv = [...entrypoint, ...cmd].map((a) => expandReferences(a, env));
  if (argv.length === 0) {
    return {
      error:
        `container "${container.name}" has no command, and image "${container.image ?? ''}" ` +
        `is not in the process provider's image table (config "images")`,
    };
  }
  return image?.workingDir !== undefined ? { argv, workingDir: image.workingDir } : { argv };
}

/**
 * Where `file` is found as `execvp` would find it with `path`, or undefined. Names with a
 * slash are taken as they are (relative to `cwd`).
 */
export function findExecutable(file: string, path: string, cwd: string): string | undefined {
  const candidates = file.includes('/')
    ? [isAbsolute(file) ? file : join(cwd, file)]
    : path
        .split(':')
        .filter(Boolean)
        .map((d) => join(d, file));
  for (const c of candidates) {
    try {
      if (statSync(c).isFile()) {
        accessSync(c, constants.X_OK);
        return c;
      }
    } catch {
      // Not here.
    }
  }
  return undefined;
}

export interface Mount {
  readonly source: string;
  readonly target: string;
  readonly readOnly: boolean;
}

export interface LaunchSpec {
  readonly argv: readonly string[];
  readonly workingDir: string;
  /** The pod's init process (host pid) whose namespaces the container joins, if any. */
  readonly sandboxPid?: number;
  /** `cgroup.procs` files the process writes itself into. */
  readonly cgroupProcs: readonly string[];
  readonly mounts: readonly Mount[];
  /** The user, groups and capabilities (security.ts). Default: the agent's, unchanged. */
  readonly privileges?: Privileges;
  /** Mount points made read-only after the volume mounts (`readOnlyRootFilesystem`). */
  readonly readOnlyMounts?: readonly string[];
  /** Paths covered after the volume mounts, so the container cannot see them. */
  readonly hiddenPaths?: readonly HiddenPath[];
  /** Written with the exit code when the process ends. */
  readonly exitFile: string;
  /** Written with a message when the process could not be started (mount, cd, cgroup). */
  readonly errorFile: string;
  /** Wrap the command in `script` so it runs on a terminal. */
  readonly tty: boolean;
}

/** Absolute paths of the tools the wrapper uses, so the container's PATH cannot hide them. */
export interface Tools {
  readonly sh: string;
  readonly nsenter: string;
  readonly unshare: string;
  readonly setsid: string;
  readonly setpriv: string;
  readonly mount: string;
  readonly script: string;
}

export function findTools(): Tools | string {
  const path = `${process.env.PATH ?? ''}:${DEFAULT_PATH}`;
  const out: Record<string, string> = {};
  for (const t of ['sh', 'nsenter', 'unshare', 'setsid', 'setpriv', 'mount', 'script']) {
    const found = findExecutable(t, path, '/');
    if (found === undefined) return `${t} not found in PATH (util-linux is needed)`;
    out[t] = found;
  }
  return out as unknown as Tools;
}

/** The argv of the wrapper that runs the container as described by `spec`. */
export function launchArgv(spec: LaunchSpec, tools: Tools): string[] {
  const q = shellQuote;
  const lines = failLines(spec.errorFile);
  for (const f of spec.cgroupProcs) {
    lines.push(`echo 0 > ${q(f)} || fail ${q(`cannot join the cgroup ${f}`)}`);
  }
  for (const m of spec.mounts) {
    lines.push(
      `${q(tools.mount)} --bind ${q(m.source)} ${q(m.target)} || fail ${q(`cannot mount ${m.source} at ${m.target}`)}`,
    );
    if (m.readOnly) {
      lines.push(
        `${q(tools.mount)} -o remount,bind,ro ${q(m.target)} || fail ${q(`cannot make ${m.target} read-only`)}`,
      );
    }
  }
  lines.push(...isolationLines(spec.readOnlyMounts ?? [], spec.hiddenPaths ?? [], tools));
  lines.push(
    `cd ${q(spec.workingDir)} || fail ${q(`cannot change to the working directory ${spec.workingDir}`)}`,
  );
  let command = spec.argv.map(q).join(' ');
  if (spec.tty) command = `${q(tools.script)} -q -e -c ${q(command)} /dev/null`;
  // The run directory's descriptor would reach what is hidden: closed before the command.
  lines.push(`exec 9<&-`);
  lines.push(`exec ${q(tools.setsid)} ${privilegePrefix(spec.privileges, tools)}${command}`);
  const inner = [tools.sh, '-c', lines.join('\n'), 'vk-container'];
  const enter =
    spec.sandboxPid === undefined
      ? inner
      : [
          tools.nsenter,
          `--target=${String(spec.sandboxPid)}`,
          '--mount',
          '--uts',
          '--ipc',
          '--pid',
          '--net',
          '--',
          tools.unshare,
          '--mount',
          '--propagation',
          'private',
          '--',
          ...inner,
        ];
  const wrapper = 'f=$1; shift; "$@"; c=$?; echo "$c" > "$f"; exit "$c"';
  return [tools.sh, '-c', wrapper, 'vk-wrapper', spec.exitFile, ...enter];
}

/**
 * The wrapper's `fail` function, which records why the container could not start. It writes
 * through a descriptor of the run directory opened first, as the directory itself is hidden
 * once the container's mount namespace is set up.
 */
function failLines(errorFile: string): string[] {
  const q = shellQuote;
  return [
    `exec 9< ${q(dirname(errorFile))} || exit 128`,
    `fail() { printf '%s\\n' "$1" > /proc/self/fd/9/${q(basename(errorFile))}; exit 128; }`,
  ];
}

/**
 * The `setpriv ... --` that starts a command with `privileges` (with a trailing space), or
 * nothing when there is nothing to change.
 */
export function privilegePrefix(
  privileges: Privileges | undefined,
  tools: Tools,
  agentIsRoot: boolean = process.getuid?.() === 0,
): string {
  const options = privileges ? setprivOptions(privileges, agentIsRoot) : [];
  if (options.length === 0) return '';
  return `${[tools.setpriv, ...options].map(shellQuote).join(' ')} `;
}
