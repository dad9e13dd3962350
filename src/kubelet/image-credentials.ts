/**
 * Which of a pod's registry credentials apply to an image, by the kubelet's keyring rules:
 *
 * - a credential's key loses its scheme (`https://`, `http://`), a leading `/v1/` or `/v2/`
 *   path and its trailing `/`, leaving `host[:port][/path]`;
 * - the image is normalised as a container runtime names it: without a registry host (its first
 *   component has no `.` or `:` and is not `localhost`) it is on `docker.io`, and a one-part
 *   name is in `library/`; its tag and digest do not count;
 * - a key matches when its host has as many dot-separated parts as the image's registry host,
 *   each equal (a `*` or `?` in the key's part is a glob), the ports are equal, and the key's
 *   path is a prefix of the image's repository path (a string prefix, as the kubelet's);
 * - matches come most specific key first (keys in reverse lexical order), and for one key in
 *   the order the credentials were given;
 * - an image on Docker Hub that no key matches takes the credentials of `index.docker.io`
 *   (which `https://index.docker.io/v1/` normalises to).
 */
import type { RegistryCredential } from '../provider.js';

/** Docker Hub as image references name it, and as docker configs name it. */
const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_KEY = 'index.docker.io';

/** A credential key without scheme, API version path and trailing slash: `host[:port][/path]`. */
export function normalizeRegistryKey(key: string): string {
  let k = key.trim().replace(/^https?:\/\//i, '');
  const slash = k.indexOf('/');
  if (slash !== -1) {
    const host = k.slice(0, slash);
    let path = k.slice(slash);
    if (path.startsWith('/v1/') || path.startsWith('/v2/')) path = path.slice(3);
    path = path.replace(/\/+$/, '');
    k = host + path;
  }
  return k;
}

/** An image's registry host (with port) and repository path, as a runtime resolves them. */
export interface ImageRepository {
  readonly host: string;
  readonly path: string;
}

/** `busybox:1.36` -> docker.io, library/busybox; `127.0.0.1:5000/a/b@sha256:...` -> as named. */
export function imageRepository(image: string): ImageRepository {
  let name = image.trim();
  const at = name.indexOf('@');
  if (at !== -1) name = name.slice(0, at);
  const lastSlash = name.lastIndexOf('/');
  const colon = name.indexOf(':', lastSlash + 1);
  if (colon !== -1) name = name.slice(0, colon);
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  if (first !== '' && (first.includes('.') || first.includes(':') || first === 'localhost')) {
    const host = first === DOCKER_HUB_KEY ? DOCKER_HUB : first;
    const path = name.slice(slash + 1);
    return { host, path: host === DOCKER_HUB && !path.includes('/') ? `library/${path}` : path };
  }
  return { host: DOCKER_HUB, path: slash === -1 ? `library/${name}` : name };
}

function splitHostPort(host: string): { readonly parts: string[]; readonly port: string } {
  const m = /^(.*?)(?::(\d*))?$/.exec(host);
  return { parts: (m?.[1] ?? host).split('.'), port: m?.[2] ?? '' };
}

const globPart = (glob: string, part: string): boolean => {
  if (!/[*?]/.test(glob)) return glob === part;
  const re = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${re}$`).test(part);
};

/** Whether a normalised key applies to the image's repository. */
export function registryKeyMatches(key: string, repo: ImageRepository): boolean {
  const slash = key.indexOf('/');
  const keyHost = slash === -1 ? key : key.slice(0, slash);
  const keyPath = slash === -1 ? '' : key.slice(slash + 1);
  const k = splitHostPort(keyHost);
  const t = splitHostPort(repo.host);
  if (k.port !== t.port || k.parts.length !== t.parts.length) return false;
  if (!repo.path.startsWith(keyPath)) return false;
  return k.parts.every((p, i) => globPart(p, t.parts[i] ?? ''));
}

/**
 * The credentials to try for `image`, in the order to try them (see the module's rules); empty
 * when none applies, and the image is pulled anonymously.
 */
export function credentialsForImage(
  image: string,
  credentials: readonly RegistryCredential[],
): RegistryCredential[] {
  const byKey = new Map<string, RegistryCredential[]>();
  for (const c of credentials) {
    const k = normalizeRegistryKey(c.registry);
    if (k === '') continue;
    const list = byKey.get(k);
    if (list) list.push(c);
    else byKey.set(k, [c]);
  }
  const repo = imageRepository(image);
  const keys = [...byKey.keys()].sort().reverse();
  const matched = keys
    .filter((k) => registryKeyMatches(k, repo))
    .flatMap((k) => byKey.get(k) ?? []);
  if (matched.length > 0 || repo.host !== DOCKER_HUB) return matched;
  return [...(byKey.get(DOCKER_HUB_KEY) ?? [])];
}
