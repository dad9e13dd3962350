/**
 * The local runtime's test images, built without a container engine: a root filesystem in a
 * directory, one gzipped tar layer (GNU tar, numeric owner 0, fixed mtimes), an OCI image config
 * and manifest. Built once into the cache; pushed to a registry through its HTTP API (Docker
 * Registry HTTP API V2: blob HEAD, upload POST then PUT with the digest, manifest PUT).
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';
import { DevClusterError } from './errors.js';

const run = promisify(execFile);

/** Bump when an image's content changes, so cached builds are redone. */
export const TEST_IMAGE_TAG = 'v1';

export const MANIFEST_MEDIA_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const CONFIG_MEDIA_TYPE = 'application/vnd.oci.image.config.v1+json';
const LAYER_MEDIA_TYPE = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** The test images by repository name. */
export type TestImageName = 'busybox' | 'pause' | 'server';
export const TEST_IMAGE_NAMES: readonly TestImageName[] = ['busybox', 'pause', 'server'];

/** What `/etc/os-release` of the busybox image says (not the host's). */
export const BUSYBOX_OS_RELEASE =
  'NAME="virtual-kubelet test image"\nID=vk-test\nPRETTY_NAME="virtual-kubelet busybox test image"\n';

interface Descriptor {
  readonly mediaType: string;
  readonly digest: string;
  readonly size: number;
}

/** A built image: its blobs (by digest, in the cache) and its manifest. */
export interface BuiltImage {
  readonly name: TestImageName;
  readonly dir: string;
  readonly manifest: Buffer;
  readonly blobs: readonly Descriptor[];
}

const sha256 = (data: Uint8Array): string =>
  `sha256:${createHash('sha256').update(data).digest('hex')}`;

/**
 * A tiny init for sandboxes: waits for SIGTERM or SIGINT and reaps children meanwhile, as the
 * pause container does. Built with `gcc -static`.
 */
const PAUSE_C = `#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
  struct sigaction a = {0};
  a.sa_handler = quit;
  sigaction(SIGINT, &a, NULL);
  sigaction(SIGTERM, &a, NULL);
  a.sa_handler = reap;
  a.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &a, NULL);
  for (;;) pause();
}
`;

/**
 * A small HTTP server for Service, probe and port-forward tests: \`/\` answers with the host name,
 * \`/healthz\` with ok (or 500 once the file /tmp/unhealthy exists), \`/env/NAME\` with a variable.
 * Listens on $PORT (default 8080). Built with CGO_ENABLED=0, standard library only.
 */
const SERVER_GO = `package main

import (
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		h, _ := os.Hostname()
		fmt.Fprintf(w, "hello from %s\\n", h)
	})
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat("/tmp/unhealthy"); err == nil {
			http.Error(w, "unhealthy", 500)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("/env/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, os.Getenv(r.URL.Path[len("/env/"):]))
	})
	go func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
		<-c
		os.Exit(0)
	}()
	fmt.Println("listening on :" + port)
	if err := http.ListenAndServe(":"+port, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
`;

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n';
const GROUP = 'root:x:0:\nnobody:x:65534:\n';

interface ImageRecipe {
  /** Fills the root filesystem; `work` is a scratch directory. */
  readonly fill: (rootfs: string, work: string) => Promise<void>;
  readonly config: Readonly<Record<string, unknown>>;
}

const PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

async function baseFiles(rootfs: string): Promise<void> {
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'bin'])
    await mkdir(join(rootfs, d), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await writeFile(join(rootfs, 'etc/passwd'), PASSWD);
  await writeFile(join(rootfs, 'etc/group'), GROUP);
}

function busyboxBinary(): string {
  for (const p of ['/bin/busybox', '/usr/bin/busybox']) if (existsSync(p)) return p;
  throw new DevClusterError(
    'StartFailed',
    "busybox is not installed: apt-get install busybox-static (the busybox test image's binary)",
  );
}

const RECIPES: Readonly<Record<TestImageName, ImageRecipe>> = {
  busybox: {
    fill: async (rootfs) => {
      await baseFiles(rootfs);
      const bin = busyboxBinary();
      const file = await run('file', ['-b', bin]).catch(() => ({ stdout: 'statically linked' }));
      if (!file.stdout.includes('statically linked'))
        throw new DevClusterError(
          'StartFailed',
          `${bin} is not statically linked: apt-get install busybox-static`,
        );
      await copyFile(bin, join(rootfs, 'bin/busybox'));
      await chmod(join(rootfs, 'bin/busybox'), 0o755);
      const { stdout } = await run(bin, ['--list']);
      for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox'))
        await symlink('busybox', join(rootfs, 'bin', applet));
      await writeFile(join(rootfs, 'etc/os-release'), BUSYBOX_OS_RELEASE);
    },
    config: { Env: [PATH_ENV], Cmd: ['sh'] },
  },
  pause: {
    fill: async (rootfs, work) => {
      await baseFiles(rootfs);
      await writeFile(join(work, 'pause.c'), PAUSE_C);
      await compile('gcc', ['-static', '-O2', '-s', '-o', join(rootfs, 'pause'), 'pause.c'], work);
    },
    config: { Env: [PATH_ENV], Entrypoint: ['/pause'] },
  },
  server: {
    fill: async (rootfs, work) => {
      await baseFiles(rootfs);
      await writeFile(join(work, 'main.go'), SERVER_GO);
      await writeFile(join(work, 'go.mod'), 'module vktestserver\n\ngo 1.21\n');
      await compile('go', ['build', '-trimpath', '-o', join(rootfs, 'server'), '.'], work, {
        CGO_ENABLED: '0',
        GOTOOLCHAIN: 'local',
        GOFLAGS: '-mod=mod',
      });
    },
    config: {
      Env: [PATH_ENV, 'PORT=8080'],
      Entrypoint: ['/server'],
      ExposedPorts: { '8080/tcp': {} },
    },
  },
};

async function compile(
  cmd: string,
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<void> {
  try {
    await run('nice', ['-n', '10', cmd, ...args], {
      cwd,
      env: { ...process.env, ...env },
      maxBuffer: 16 << 20,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new DevClusterError(
      'BuildFailed',
      `building a test image with ${cmd} failed: ${(e.stderr ?? e.message).trim()}`,
      { cause: err },
    );
  }
}

/**
 * The image `name` in `cacheDir/images/<tag>/<name>`, built now if the cache lacks it. Safe to
 * call concurrently from several processes: each builds in its own scratch directory and the
 * finished image is renamed into place.
 */
export async function ensureTestImage(name: TestImageName, cacheDir: string): Promise<BuiltImage> {
  const dir = join(cacheDir, 'images', TEST_IMAGE_TAG, name);
  const manifestPath = join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) await buildImage(name, dir);
  const manifest = await readFile(manifestPath);
  const parsed = JSON.parse(manifest.toString()) as { config: Descriptor; layers: Descriptor[] };
  return { name, dir, manifest, blobs: [parsed.config, ...parsed.layers] };
}

async function buildImage(name: TestImageName, dir: string): Promise<void> {
  const work = `${dir}.build-${String(process.pid)}-${String(Date.now())}`;
  const rootfs = join(work, 'rootfs');
  const out = join(work, 'image');
  await rm(work, { recursive: true, force: true });
  await mkdir(rootfs, { recursive: true });
  await mkdir(join(out, 'blobs'), { recursive: true });
  try {
    const recipe = RECIPES[name];
    await recipe.fill(rootfs, work);
    const tarPath = join(work, 'layer.tar');
    await run('tar', [
      '--sort=name',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '--mtime=@0',
      '-C',
      rootfs,
      '-cf',
      tarPath,
      '.',
    ]);
    const tar = await readFile(tarPath);
    const layer = gzipSync(tar, { level: 9 });
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: recipe.config,
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
        history: [{ created_by: `virtual-kubelet test image ${name}` }],
      }),
    );
    const layerDesc = { mediaType: LAYER_MEDIA_TYPE, digest: sha256(layer), size: layer.length };
    const configDesc = {
      mediaType: CONFIG_MEDIA_TYPE,
      digest: sha256(config),
      size: config.length,
    };
    await writeFile(join(out, 'blobs', layerDesc.digest.slice(7)), layer);
    await writeFile(join(out, 'blobs', configDesc.digest.slice(7)), config);
    const manifest = {
      schemaVersion: 2,
      mediaType: MANIFEST_MEDIA_TYPE,
      config: configDesc,
      layers: [layerDesc],
    };
    await writeFile(join(out, 'manifest.json'), JSON.stringify(manifest));
    await rm(dir, { recursive: true, force: true });
    await rename(out, dir);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Basic credentials for a registry that requires them. */
export interface RegistryCredentials {
  readonly username: string;
  readonly password: string;
}

/**
 * Pushes `image` as `<repository>:<tag>` to the plain-HTTP registry at `registry` (host:port).
 * Blobs the registry has are not sent again.
 */
export async function pushImage(
  image: BuiltImage,
  registry: string,
  repository: string,
  tag: string,
  credentials?: RegistryCredentials,
): Promise<void> {
  const base = `http://${registry}/v2/${repository}`;
  const headers: Record<string, string> = credentials
    ? {
        authorization: `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`,
      }
    : {};
  const check = async (res: Response, what: string, ok: number[]): Promise<void> => {
    if (!ok.includes(res.status))
      throw new DevClusterError(
        'StartFailed',
        `pushing ${repository}:${tag} to ${registry}: ${what} answered ${String(res.status)} ${(await res.text()).slice(0, 200)}`,
      );
  };
  for (const blob of image.blobs) {
    const head = await fetch(`${base}/blobs/${blob.digest}`, { method: 'HEAD', headers });
    if (head.status === 200) continue;
    const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST', headers });
    await check(start, 'the upload start', [202]);
    const location = new URL(start.headers.get('location') ?? '', `http://${registry}`);
    location.searchParams.set('digest', blob.digest);
    const data = await readFile(join(image.dir, 'blobs', blob.digest.slice(7)));
    const put = await fetch(location, {
      method: 'PUT',
      headers: { ...headers, 'content-type': 'application/octet-stream' },
      body: data,
    });
    await check(put, 'the blob upload', [201]);
  }
  const put = await fetch(`${base}/manifests/${tag}`, {
    method: 'PUT',
    headers: { ...headers, 'content-type': MANIFEST_MEDIA_TYPE },
    body: image.manifest,
  });
  await check(put, 'the manifest upload', [201]);
}
