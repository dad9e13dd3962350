import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureGoModuleBinaries, type BuildOptions } from './build.js';
import { cacheRoot, modulesDir } from './paths.js';

/**
 * The Helm release the tests lint and render `charts/virtual-kubelet` with. It must match the
 * `helm.sh/helm/v4` line of `modules/helm/go.mod` (a unit test checks this).
 */
export const HELM_VERSION = 'v4.3.2';

const dirName = `helm-${HELM_VERSION}`;

/** Where the helm binary is in a cache, built or not. */
export function helmPath(cacheDir: string = cacheRoot()): string {
  return join(cacheDir, dirName, 'bin', 'helm');
}

/**
 * Builds helm from `modules/helm` into the cache unless the cached build is current (the same
 * rules, lock and progress lines as the control plane's build). Resolves to its path.
 */
export async function ensureHelm(options: BuildOptions = {}): Promise<string> {
  const { paths } = await ensureGoModuleBinaries(
    {
      moduleDir: fileURLToPath(new URL('helm/', modulesDir)),
      dirName,
      targets: [{ name: 'helm', pkg: 'helm.sh/helm/v4/cmd/helm' }],
      // `helm version` reports the pinned release rather than the module's placeholder.
      ldflags: ['-s', '-w', `-X helm.sh/helm/v4/internal/version.version=${HELM_VERSION}`],
    },
    options,
  );
  return paths.helm ?? helmPath(options.cacheDir);
}
