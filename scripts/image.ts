// Builds the virtual-kubelet OCI image with buildah (no Docker daemon, nothing pulled) and exports
// it as an OCI archive into the cache; with --push, also pushes it to a registry.
//
//   node --import tsx scripts/image.ts [--tag T] [--push HOST:PORT [--insecure]]   (npm run image)
//
// The image is FROM scratch (see Containerfile): the build context is a root filesystem made here
// from this machine's Node binary and the shared libraries it loads (per ldd), dist/ (npm run
// build first), bin/, package.json and the production node_modules (npm ls --omit=dev).
import { execFile } from 'node:child_process';
import {
  access,
  chmod,
  cp,
  mkdir,
  mkdtemp,
  readFile,
  realpath,
  rm,
  writeFile,
} from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { cacheRoot } from '../src/devcluster/paths.js';

export interface ImageOptions {
  /** The repository checkout. Default: the one holding this script. */
  readonly repoDir?: string;
  /** Cache root; the buildah storage and the archive live below `<cacheDir>/image-build/`. */
  readonly cacheDir?: string;
  /** Image tag. Default: package.json's version. */
  readonly tag?: string;
  /** Also push to this registry (`host:port`) as `<registry>/virtual-kubelet:<tag>`. */
  readonly push?: string;
  /** Push over plain HTTP or to a registry whose certificate is not trusted. Default: false. */
  readonly insecure?: boolean;
  /** Progress lines. Default: discard. */
  readonly log?: (line: string) => void;
}

export interface BuiltImage {
  /** The image's name in the buildah storage, e.g. `localhost/virtual-kubelet:0.1.0`. */
  readonly image: string;
  /** The OCI archive (`oci-archive:` transport) the image was exported to. */
  readonly archive: string;
  /** Global buildah flags selecting the storage the image is in. */
  readonly storageFlags: readonly string[];
  /** Where it was pushed, when it was. */
  readonly pushed?: string;
}

const defaultRepo = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/** The buildah storage of image builds: in the cache, apart from any other user of buildah. */
export function storageFlags(cacheDir: string = cacheRoot()): string[] {
  const base = join(cacheDir, 'image-build');
  // vfs: no overlay mounts that a killed build could leave behind.
  return [
    '--root',
    join(base, 'storage'),
    '--runroot',
    join(base, 'run'),
    '--storage-driver',
    'vfs',
  ];
}

/** Runs buildah (or another command); rejects with its stderr's last lines. */
export function run(cmd: string, args: readonly string[], cwd?: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    execFile(
      cmd,
      [...args],
      { cwd, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, BUILDAH_ISOLATION: 'oci' } },
      (err, stdout, stderr) => {
        if (err) {
          const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
          reject(
            new Error(
              missing
                ? `${cmd} is not installed (Debian: apt-get install ${cmd})`
                : `${cmd} ${args.join(' ')} failed: ${stderr.trim().split('\n').slice(-5).join(' | ')}`,
            ),
          );
        } else resolvePromise(stdout);
      },
    );
  });
}

/** The shared libraries a binary loads, as ldd resolves them (absolute paths). */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const out = await run('ldd', [binary]);
  const libs = new Set<string>();
  for (const line of out.split('\n')) {
    const arrow = /=>\s+(\/\S+)/.exec(line);
    const bare = /^\s*(\/\S+)\s+\(/.exec(line);
    const path = arrow?.[1] ?? bare?.[1];
    if (path) libs.add(path);
  }
  return [...libs];
}

/** Writes the image's root filesystem into `rootfs`. */
async function prepareRootfs(repo: string, rootfs: string): Promise<void> {
  const node = await realpath(process.execPath);
  const put = async (from: string, to: string): Promise<void> => {
    await mkdir(dirname(join(rootfs, to)), { recursive: true });
    await cp(from, join(rootfs, to), { dereference: true, recursive: true });
  };
  await put(node, '/usr/bin/node');
  for (const lib of await sharedLibraries(node)) await put(lib, lib);
  for (const part of ['dist', 'bin', 'package.json']) await put(join(repo, part), `/app/${part}`);
  // The production dependencies only: each package without its nested node_modules, which
  // npm ls lists on their own.
  const modules = await realpath(join(repo, 'node_modules'));
  const listed = await run('npm', ['ls', '--omit=dev', '--parseable', '--all'], repo);
  for (const line of listed.split('\n')) {
    const path = line.trim();
    if (!path || path === repo) continue;
    const real = await realpath(path).catch(() => path);
    const rel = relative(modules, real);
    const within = relative(join(repo, 'node_modules'), path);
    const name = rel.startsWith('..') ? within : rel;
    if (name.startsWith('..')) continue;
    await mkdir(dirname(join(rootfs, 'app', 'node_modules', name)), { recursive: true });
    await cp(real, join(rootfs, 'app', 'node_modules', name), {
      recursive: true,
      dereference: true,
      filter: (src) => src !== join(real, 'node_modules'),
    });
  }
  await mkdir(join(rootfs, 'etc'), { recursive: true });
  await writeFile(
    join(rootfs, 'etc', 'passwd'),
    'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n',
  );
  await writeFile(join(rootfs, 'etc', 'group'), 'root:x:0:\nnonroot:x:65532:\n');
  await mkdir(join(rootfs, 'tmp'), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await mkdir(join(rootfs, 'home', 'nonroot'), { recursive: true });
}

/**
 * Builds the image from the Containerfile, exports it as an OCI archive into
 * `<cacheDir>/image-build/virtual-kubelet-<tag>.oci.tar`, and pushes it when asked. Needs
 * `dist/` (npm run build).
 */
export async function buildImage(options: ImageOptions = {}): Promise<BuiltImage> {
  const repo = options.repoDir ?? defaultRepo;
  const cacheDir = options.cacheDir ?? cacheRoot();
  const say = options.log ?? (() => undefined);
  await access(join(repo, 'dist', 'cli', 'main.js')).catch(() => {
    throw new Error(`${join(repo, 'dist')} is missing: run npm run build first`);
  });
  const pkg = JSON.parse(await readFile(join(repo, 'package.json'), 'utf8')) as { version: string };
  const tag = options.tag ?? pkg.version;
  const image = `localhost/virtual-kubelet:${tag}`;
  const storage = storageFlags(cacheDir);
  const base = join(cacheDir, 'image-build');
  await mkdir(base, { recursive: true });
  const context = await mkdtemp(join(base, 'context-'));
  try {
    say(`preparing the root filesystem in ${context}`);
    await prepareRootfs(repo, join(context, 'rootfs'));
    say(`buildah build -t ${image}`);
    await run('buildah', [
      ...storage,
      'build',
      '--format',
      'oci',
      '--network',
      'none',
      '--pull-never',
      '-f',
      join(repo, 'Containerfile'),
      '-t',
      image,
      context,
    ]);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  const archive = join(base, `virtual-kubelet-${tag}.oci.tar`);
  await rm(archive, { force: true });
  await run('buildah', [...storage, 'push', image, `oci-archive:${archive}:${image}`]);
  say(`OCI archive: ${archive}`);
  let pushed: string | undefined;
  if (options.push) {
    pushed = `${options.push}/virtual-kubelet:${tag}`;
    await run('buildah', [
      ...storage,
      'push',
      `--tls-verify=${options.insecure ? 'false' : 'true'}`,
      image,
      `docker://${pushed}`,
    ]);
    say(`pushed ${pushed}`);
  }
  return { image, archive, storageFlags: storage, ...(pushed ? { pushed } : {}) };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const args = process.argv.slice(2);
  const value = (flag: string): string | undefined => {
    const i = args.indexOf(flag);
    return i >= 0 ? args[i + 1] : undefined;
  };
  const unknown = args.filter(
    (a, i) =>
      a.startsWith('--') &&
      !['--tag', '--push', '--insecure'].includes(a) &&
      !['--tag', '--push'].includes(args[i - 1] ?? ''),
  );
  if (unknown.length > 0) {
    process.stderr.write(
      `image: unknown option ${unknown.join(' ')} (options: --tag T, --push HOST:PORT, --insecure)\n`,
    );
    process.exit(2);
  }
  const tag = value('--tag');
  const push = value('--push');
  try {
    const built = await buildImage({
      ...(tag ? { tag } : {}),
      ...(push ? { push } : {}),
      insecure: args.includes('--insecure'),
      log: (l) => process.stderr.write(`[image] ${l}\n`),
    });
    process.stdout.write(`${built.image}\n${built.archive}\n`);
  } catch (err) {
    process.stderr.write(`image: ${(err as Error).message}\n`);
    process.exit(1);
  }
}
