import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Root of the build cache: `$VK_CACHE_DIR`, else `$XDG_CACHE_HOME/virtual-kubelet`, else
 * `~/.cache/virtual-kubelet`. Nothing in it belongs to the repository.
 */
export function cacheRoot(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VK_CACHE_DIR) return env.VK_CACHE_DIR;
  const xdg = env.XDG_CACHE_HOME;
  return join(xdg && xdg.length > 0 ? xdg : join(homedir(), '.cache'), 'virtual-kubelet');
}

/**
 * Default home of the background dev cluster started by `dev-cluster up`:
 * `$XDG_STATE_HOME/virtual-kubelet/dev-cluster`, else `~/.local/state/virtual-kubelet/dev-cluster`.
 */
export function defaultClusterDir(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_STATE_HOME;
  const base = xdg && xdg.length > 0 ? xdg : join(homedir(), '.local', 'state');
  return join(base, 'virtual-kubelet', 'dev-cluster');
}

/** Directory holding the Go modules (go.mod, go.sum) the binaries are built from. */
export const modulesDir = new URL('../../src/devcluster/modules/', import.meta.url);

/** Default home of the background runtime started by `dev-runtime up`, next to the dev cluster's. */
export function defaultRuntimeDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(defaultClusterDir(env), '..', 'dev-runtime');
}
