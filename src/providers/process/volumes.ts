/**
 * Pod volumes on the host: where each one lives, the content of configMap, secret, downwardAPI
 * and projected volumes written as the kubelet writes it (atomically), and the bind mounts of a
 * container.
 *
 * Atomic writes: the files go to a fresh `..<timestamp>` directory, a `..data` symlink is
 * swapped to it with a rename, and every top-level name is a symlink through `..data`. A
 * container that has the volume directory bind-mounted sees either the old or the new content,
 * never a mix, and sees updates without a remount.
 */
import type { V1Container, V1Pod, V1Volume } from '../../wire.js';
import {
  chmodSync,
  chownSync,
  existsSync,
  lchownSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmdirSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { invalidInput, unavailable } from '../../errors.js';
import type { ResolvedVolume } from '../../provider.js';
import type { Mount } from './launch.js';

const CONTENT_KINDS = ['configMap', 'secret', 'downwardAPI', 'projected'] as const;

/** A volume as prepared on the host. */
export interface PreparedVolume {
  readonly name: string;
  /** The host path that is bind-mounted. */
  readonly source: string;
  /** Mounted read-only whatever the container says (configMap, secret, ...). */
  readonly readOnly: boolean;
  /** Needs a tmpfs (emptyDir with medium Memory). */
  readonly tmpfs: boolean;
}

export const volumeDir = (podDir: string, name: string): string => join(podDir, 'volumes', name);

const hasContent = (v: V1Volume): boolean => CONTENT_KINDS.some((k) => v[k] !== undefined);

/**
 * Creates the directories of the pod's volumes and checks hostPath volumes. Throws
 * `Unavailable` (the core retries) for a hostPath that is not there yet, `InvalidInput` for a
 * kind this provider cannot mount.
 */
export function prepareVolumes(pod: V1Pod, podDir: string): PreparedVolume[] {
  const out: PreparedVolume[] = [];
  for (const v of pod.spec?.volumes ?? []) {
    if (v.emptyDir !== undefined) {
      const dir = volumeDir(podDir, v.name);
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      applyEmptyDirAccess(dir, pod);
      out.push({
        name: v.name,
        source: dir,
        readOnly: false,
        tmpfs: v.emptyDir.medium === 'Memory',
      });
    } else if (hasContent(v)) {
      const dir = volumeDir(podDir, v.name);
      mkdirSync(dir, { recursive: true });
      out.push({ name: v.name, source: dir, readOnly: true, tmpfs: false });
    } else if (v.hostPath !== undefined) {
      out.push({ name: v.name, source: checkHostPath(v), readOnly: false, tmpfs: false });
    } else {
      const kind = Object.keys(v).find((k) => k !== 'name') ?? 'unknown';
      throw invalidInput(
        `volume "${v.name}": ${kind} volumes are not supported by the process provider ` +
          '(emptyDir, hostPath, configMap, secret, downwardAPI and projected are)',
      );
    }
  }
  return out;
}

function checkHostPath(v: V1Volume): string {
  const path = v.hostPath?.path ?? '';
  const type = v.hostPath?.type ?? '';
  if (!isAbsolute(path)) throw invalidInput(`volume "${v.name}": hostPath must be absolute`);
  const stat = (): ReturnType<typeof statSync> | undefined => {
    try {
      return statSync(path);
    } catch {
      return undefined;
    }
  };
  const s = stat();
  const missing = (what: string): never => {
    throw unavailable(`volume "${v.name}": hostPath ${path} is not ${what}`);
  };
  switch (type) {
    case 'DirectoryOrCreate':
      if (!s) mkdirSync(path, { recursive: true, mode: 0o755 });
      else if (!s.isDirectory()) missing('a directory');
      break;
    case 'Directory':
      if (!s?.isDirectory()) missing('a directory');
      break;
    case 'FileOrCreate':
      if (!s) {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, '', { mode: 0o644 });
      } else if (!s.isFile()) missing('a file');
      break;
    case 'File':
      if (!s?.isFile()) missing('a file');
      break;
    case 'Socket':
      if (!s?.isSocket()) missing('a socket');
      break;
    case 'CharDevice':
      if (!s?.isCharacterDevice()) missing('a character device');
      break;
    case 'BlockDevice':
      if (!s?.isBlockDevice()) missing('a block device');
      break;
    default:
      // "" (no check): the path is mounted when it exists; a missing one is created as a
      // directory, as the kubelet's runtime does.
      if (!s) mkdirSync(path, { recursive: true, mode: 0o755 });
  }
  return path;
}

/**
 * Replaces the content of a volume directory with `volume.files`, atomically (see the module
 * comment). Paths are checked: no absolute paths, no `..`.
 */
export function writeVolume(
  dir: string,
  volume: ResolvedVolume,
  options: { readonly fsGroup?: number } = {},
): void {
  mkdirSync(dir, { recursive: true });
  const stamp = `..${new Date().toISOString().replace(/[:.]/g, '_')}.${String(process.hrtime.bigint() % 1_000_000n)}`;
  const data = join(dir, stamp);
  mkdirSync(data, { mode: 0o755 });
  const top = new Set<string>();
  for (const f of volume.files) {
    const rel = normalize(f.path);
    if (isAbsolute(f.path) || rel.startsWith('..') || rel === '.' || rel.startsWith('/')) {
      rmSync(data, { recursive: true, force: true });
      throw invalidInput(`volume "${volume.name}": invalid file path "${f.path}"`);
    }
    const target = join(data, rel);
    mkdirSync(dirname(target), { recursive: true, mode: 0o755 });
    writeFileSync(target, f.data, { mode: f.mode });
    chmodSync(target, f.mode);
    // A token the kubelet would give to the pod's user (FsUser); only root can give files away.
    if (f.owner !== undefined && process.getuid?.() === 0) chownSync(target, f.owner, -1);
    top.add(rel.split('/')[0] ?? rel);
  }
  // The new files have their group before they are visible.
  if (options.fsGroup !== undefined) applyFsGroup(data, options.fsGroup, true);
  const tmpLink = join(dir, '..data_tmp');
  rmSync(tmpLink, { force: true });
  symlinkSync(stamp, tmpLink);
  renameSync(tmpLink, join(dir, '..data'));
  for (const name of top) {
    const link = join(dir, name);
    if (!existsSync(link) && !isSymlink(link)) symlinkSync(join('..data', name), link);
  }
  // Remove names that are gone and old data directories.
  for (const entry of readdirSync(dir)) {
    if (entry === '..data' || entry === stamp) continue;
    const path = join(dir, entry);
    if (entry.startsWith('..')) rmSync(path, { recursive: true, force: true });
    else if (!top.has(entry) && isSymlink(path)) rmSync(path, { force: true });
  }
  if (options.fsGroup !== undefined) applyFsGroup(dir, options.fsGroup, true);
}

/**
 * Who may use the pod's emptyDirs. Not world-writable where that can be avoided: when every
 * container runs as one user, that user owns it (mode 0770); else with `fsGroup` the group owns
 * it (02770, and every container has the group); else, as the kubelet makes it, 0777, which
 * only the pod reaches (the state directory is hidden from pods and closed to other users).
 * An agent that is not root cannot give files away: 0777.
 */
export function emptyDirAccess(pod: V1Pod): { mode: number; uid?: number; fsGroup?: number } {
  const agent = process.getuid?.();
  if (agent !== 0) return { mode: 0o777 };
  const podUser = pod.spec?.securityContext?.runAsUser;
  const users = new Set(
    [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].map(
      (c) => c.securityContext?.runAsUser ?? podUser ?? agent,
    ),
  );
  const fsGroup = podFsGroup(pod);
  const [only] = users;
  if (users.size === 1 && only !== undefined)
    return { mode: 0o770, uid: only, ...(fsGroup !== undefined ? { fsGroup } : {}) };
  if (fsGroup !== undefined) return { mode: 0o770, fsGroup };
  return { mode: 0o777 };
}

/** Gives an emptyDir (on disk, or a tmpfs reached through the sandbox's root) its access. */
export function applyEmptyDirAccess(dir: string, pod: V1Pod): void {
  const access = emptyDirAccess(pod);
  if (access.uid !== undefined) chownSync(dir, access.uid, -1);
  chmodSync(dir, access.mode);
  if (access.fsGroup !== undefined) applyFsGroup(dir, access.fsGroup, false);
}

/**
 * The pod's `fsGroup`, when the agent can give files to it (it runs as root); undefined
 * otherwise.
 */
export function podFsGroup(pod: V1Pod): number | undefined {
  if (process.getuid?.() !== 0) return undefined;
  return pod.spec?.securityContext?.fsGroup;
}

/**
 * Gives `path` and what is below it to `fsGroup`, as the kubelet's SetVolumeOwnership does:
 * the group changes (the owner stays), files get group read (and write unless `readOnly`),
 * directories also group search and the setgid bit, so what is created in them later gets
 * the group too. Symbolic links change group only.
 */
export function applyFsGroup(path: string, fsGroup: number, readOnly: boolean): void {
  const s = lstatSync(path);
  lchownSync(path, s.uid, fsGroup);
  if (s.isSymbolicLink()) return;
  let mask = readOnly ? 0o440 : 0o660;
  if (s.isDirectory()) mask |= 0o2110;
  chmodSync(path, (s.mode & 0o7777) | mask);
  if (s.isDirectory()) {
    for (const entry of readdirSync(path)) applyFsGroup(join(path, entry), fsGroup, readOnly);
  }
}

const isSymlink = (path: string): boolean => {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
};

/**
 * The bind mounts of `container`: every volumeMount, with `subPath` resolved below the volume.
 * Throws `InvalidInput` for a mount of an unknown volume or a subPath that leaves it.
 */
export function containerMounts(
  container: V1Container,
  volumes: readonly PreparedVolume[],
): Mount[] {
  return (container.volumeMounts ?? []).map((m) => {
    const v = volumes.find((x) => x.name === m.name);
    if (!v) throw invalidInput(`container "${container.name}" mounts unknown volume "${m.name}"`);
    let source = v.source;
    if (m.subPath !== undefined && m.subPath !== '') {
      const rel = normalize(m.subPath);
      if (isAbsolute(rel) || rel.startsWith('..'))
        throw invalidInput(`volumeMount "${m.name}": invalid subPath "${m.subPath}"`);
      source = join(v.source, rel);
      if (!existsSync(source)) mkdirSync(source, { recursive: true });
    }
    return { source, target: m.mountPath, readOnly: v.readOnly || m.readOnly === true };
  });
}

/**
 * Makes sure every mount target exists on the host filesystem (which the pod shares), creating
 * what is missing: a directory, or an empty file when the source is a file. Returns the paths
 * created, deepest last, so they can be removed when the pod goes.
 */
export function createMountTargets(mounts: readonly Mount[]): string[] {
  const created: string[] = [];
  for (const m of mounts) {
    if (existsSync(m.target)) continue;
    const parts = normalize(m.target).split('/').filter(Boolean);
    let path = '';
    for (const [i, part] of parts.entries()) {
      path += `/${part}`;
      if (existsSync(path)) continue;
      const last = i === parts.length - 1;
      if (last && !statSync(m.source).isDirectory()) writeFileSync(path, '');
      else mkdirSync(path);
      created.push(path);
    }
  }
  return created;
}

/** Removes mount targets created by `createMountTargets` if they are still empty, deepest first. */
export function removeMountTargets(created: readonly string[]): void {
  const depth = (path: string): number => path.split('/').length;
  for (const path of [...created].sort((a, b) => depth(b) - depth(a))) {
    try {
      const s = lstatSync(path);
      if (s.isDirectory()) {
        if (readdirSync(path).length === 0) rmdirSync(path);
      } else if (s.size === 0) rmSync(path);
    } catch {
      // Gone or in use.
    }
  }
}

/** `path` and each of its parents but `/`, normalised: `/a/b/c` gives `/a/b/c`, `/a/b`, `/a`. */
function pathAndParents(path: string): string[] {
  const out: string[] = [];
  for (let p = normalize(path); p !== '/' && p !== '.' && p !== ''; p = dirname(p)) out.push(p);
  return out;
}

/**
 * The mount targets that pods need on the host filesystem, which they share. A path that one
 * pod created (a target, or a parent of one) goes with that pod only when no other pod needs
 * it; otherwise the duty to remove it passes to a pod that does, so a pod that is going never
 * takes away the mount point of a container that is starting.
 */
export class MountTargets {
  /** The paths each pod needs: its targets and their parents. */
  readonly #needs = new Map<string, Set<string>>();
  /** Each pod's list of the paths it must remove (its record's, held by reference). */
  readonly #duties = new Map<string, string[]>();

  readonly #handedOver: (pod: string) => void;

  /** @param handedOver Called with a pod whose list of paths to remove grew (to save it). */
  constructor(handedOver: (pod: string) => void = () => undefined) {
    this.#handedOver = handedOver;
  }

  /**
   * Pod `pod` (a key that no later pod reuses, such as its state directory) needs the targets
   * of `mounts`; `duties` is its list of paths to remove when it goes, kept by reference.
   */
  use(pod: string, mounts: readonly Mount[], duties: string[]): void {
    const needs = this.#needs.get(pod) ?? new Set<string>();
    for (const m of mounts) for (const p of pathAndParents(m.target)) needs.add(p);
    this.#needs.set(pod, needs);
    this.#duties.set(pod, duties);
  }

  /**
   * Pod `pod` is gone: each path on its list that no other pod needs is removed (when empty);
   * each other one passes to a pod that needs it.
   */
  release(pod: string): void {
    const duties = this.#duties.get(pod) ?? [];
    this.#needs.delete(pod);
    this.#duties.delete(pod);
    const remove: string[] = [];
    for (const path of duties) {
      const heir = [...this.#needs].find(([, needs]) => needs.has(normalize(path)))?.[0];
      const list = heir === undefined ? undefined : this.#duties.get(heir);
      if (heir === undefined || !list) {
        remove.push(path);
        continue;
      }
      list.push(path);
      this.#handedOver(heir);
    }
    removeMountTargets(remove);
  }
}
