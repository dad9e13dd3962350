// The benchmark peers: third-party node agents built from our own go.mod wrappers in
// bench/peers/<name>/ into the same cache as the control plane (never into the repository).
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { ensureGoModuleBinaries, formatSeconds } from '../src/devcluster/build.js';
import { cacheRoot } from '../src/devcluster/paths.js';

export type PeerName = 'go-vk' | 'kwok';

interface PeerModule {
  /** Module path whose version the wrapper's go.mod pins. */
  readonly upstream: string;
  /** Binary name and Go package. */
  readonly target: { readonly name: string; readonly pkg: string };
}

const PEERS: Readonly<Record<PeerName, PeerModule>> = {
  'go-vk': {
    upstream: 'github.com/virtual-kubelet/virtual-kubelet',
    target: {
      name: 'virtual-kubelet',
      pkg: 'github.com/virtual-kubelet/virtual-kubelet/cmd/virtual-kubelet',
    },
  },
  kwok: {
    upstream: 'sigs.k8s.io/kwok',
    target: { name: 'kwok', pkg: 'sigs.k8s.io/kwok/cmd/kwok' },
  },
};

/** A built peer: its binary and the upstream version it was built from. */
export interface Peer {
  readonly name: PeerName;
  readonly binary: string;
  readonly version: string;
  /** Seconds this call spent compiling; 0 when the cache was current. */
  readonly buildSeconds: number;
}

const moduleDir = (name: PeerName): string =>
  fileURLToPath(new URL(`peers/${name}/`, import.meta.url));

/** The upstream version pinned by `bench/peers/<name>/go.mod`. */
export async function peerVersion(name: PeerName): Promise<string> {
  const goMod = await readFile(`${moduleDir(name)}go.mod`, 'utf8');
  const upstream = PEERS[name].upstream.replaceAll('.', '\\.');
  const m = new RegExp(`^\\s*${upstream} (v\\S+)`, 'm').exec(goMod);
  if (!m?.[1])
    throw new Error(`bench/peers/${name}/go.mod does not require ${PEERS[name].upstream}`);
  return m[1];
}

/** A peer that is not in the cache, when building was not allowed. */
export class NotBuiltError extends Error {
  override readonly name = 'NotBuiltError';
}

/**
 * The peer's binary as the cache holds it, without building or checking that it is current;
 * throws `NotBuiltError` when there is none (a smoke run builds nothing).
 */
export async function cachedPeer(name: PeerName): Promise<Peer> {
  const version = await peerVersion(name);
  const binary = join(cacheRoot(), `${name}-${version}`, 'bin', PEERS[name].target.name);
  if (!existsSync(binary))
    throw new NotBuiltError(
      `${name} ${version} is not built (no ${binary}); any run that is not a smoke builds it`,
    );
  return { name, binary, version, buildSeconds: 0 };
}

/**
 * Builds a peer on first use (minutes: it compiles client-go and friends), later returns the
 * cached binary at once. Safe against concurrent builders, like the control plane.
 */
export async function ensurePeer(
  name: PeerName,
  progress: (line: string) => void,
  signal?: AbortSignal,
): Promise<Peer> {
  const version = await peerVersion(name);
  const peer = PEERS[name];
  const result = await ensureGoModuleBinaries(
    { moduleDir: moduleDir(name), dirName: `${name}-${version}`, targets: [peer.target] },
    { progress, ...(signal ? { signal } : {}) },
  );
  const binary = result.paths[peer.target.name];
  if (!binary) throw new Error(`no binary for ${name}`);
  if (result.built) progress(`${name} ${version} built in ${formatSeconds(result.elapsedMs)}`);
  return {
    name,
    binary,
    version,
    buildSeconds: result.built ? result.elapsedMs / 1000 : 0,
  };
}

/** kwokctl's default stages (node-fast, node-heartbeat-with-lease, pod-fast), by file. */
const KWOK_DEFAULT_STAGES = [
  'kustomize/stage/node/fast/node-initialize.yaml',
  'kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml',
  'kustomize/stage/pod/fast/pod-ready.yaml',
  'kustomize/stage/pod/fast/pod-complete.yaml',
  'kustomize/stage/pod/fast/pod-delete.yaml',
];

/**
 * A kwok `--config` file holding the stages kwokctl gives kwok by default (kwok itself starts
 * with none). Assembled from the kwok module's own files in the Go module cache, next to the
 * binary, so nothing of kwok's is copied into this repository.
 */
export async function kwokStagesConfig(peer: Peer): Promise<string> {
  const path = join(dirname(dirname(peer.binary)), 'stages.yaml');
  const existing = await readFile(path, 'utf8').catch(() => '');
  if (existing.includes(`# kwok ${peer.version}`)) return path;
  const { stdout } = await promisify(execFile)(
    'go',
    ['list', '-m', '-f', '{{.Dir}}', 'sigs.k8s.io/kwok'],
    {
      cwd: moduleDir('kwok'),
      env: { ...process.env, GOFLAGS: '-mod=readonly', GOWORK: 'off', GOTOOLCHAIN: 'local' },
    },
  );
  const dir = stdout.trim();
  const docs = await Promise.all(KWOK_DEFAULT_STAGES.map((f) => readFile(join(dir, f), 'utf8')));
  await writeFile(
    path,
    `# kwok ${peer.version}: kwokctl's default stages, from ${dir}\n${docs.map((d) => `---\n${d.trim()}\n`).join('')}`,
  );
  return path;
}
