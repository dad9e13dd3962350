/**
 * Builds the example providers of `examples/providers/` into the cache
 * (`~/.cache/virtual-kubelet/example-providers/`), keyed by a hash of their sources and of the
 * protocol's `.proto`, so a change of either rebuilds and nothing else does.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import descriptor from 'protobufjs/ext/descriptor/index.js';
import { cacheRoot } from '../../src/devcluster/paths.js';
import { PROTO_PATH } from '../../src/providers/external/index.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const GO_MOCK_SOURCE = join(ROOT, 'examples/providers/go-mock');

/** The files of the Go example that go into its build: sources, go.mod, go.sum. */
function goSources(): string[] {
  return readdirSync(GO_MOCK_SOURCE)
    .filter((f) => f.endsWith('.go') || f === 'go.mod' || f === 'go.sum')
    .sort();
}

/**
 * The path of the Go mock provider's binary, built first when the cache lacks it (with the
 * installed Go, modules from the module proxy as go.sum pins them). The `.proto` is copied next
 * to the sources, where the program embeds it.
 */
export async function buildGoMock(signal?: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  for (const f of goSources()) hash.update(f).update(readFileSync(join(GO_MOCK_SOURCE, f)));
  hash.update(readFileSync(PROTO_PATH));
  const dir = join(cacheRoot(), 'example-providers', `go-mock-${hash.digest('hex').slice(0, 16)}`);
  const binary = join(dir, 'go-mock');
  if (existsSync(binary)) return binary;
  const work = `${dir}.build-${String(process.pid)}`;
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  for (const f of goSources()) copyFileSync(join(GO_MOCK_SOURCE, f), join(work, f));
  copyFileSync(PROTO_PATH, join(work, 'provider.proto'));
  await new Promise<void>((resolve, reject) => {
    let err = '';
    const child = spawn('nice', ['-n', '10', 'go', 'build', '-o', 'go-mock', '.'], {
      cwd: work,
      env: {
        ...process.env,
        CGO_ENABLED: '0',
        GOFLAGS: '-mod=readonly',
        GOWORK: 'off',
        GOTOOLCHAIN: 'local',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
      ...(signal ? { signal } : {}),
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else
        reject(
          new Error(
            `building examples/providers/go-mock failed (exit ${String(code)}): ${err.trim()}`,
          ),
        );
    });
  });
  mkdirSync(dirname(dir), { recursive: true });
  rmSync(dir, { recursive: true, force: true });
  renameSync(work, dir);
  return binary;
}

export const PYTHON_MOCK = join(ROOT, 'examples/providers/python-mock/provider.py');

/**
 * The protocol as a FileDescriptorSet (binary), for languages that build their messages from
 * descriptors at run time (the Python example): written into the cache by protobufjs, keyed by
 * a hash of the `.proto`.
 */
export function protocolDescriptorSet(): string {
  const text = readFileSync(PROTO_PATH);
  const hash = createHash('sha256').update(text).digest('hex').slice(0, 16);
  const path = join(cacheRoot(), 'example-providers', `provider-${hash}.binpb`);
  if (existsSync(path)) return path;
  const root = new protobuf.Root();
  root.loadSync(PROTO_PATH, { keepCase: true });
  const set = (root as unknown as { toDescriptor(syntax: string): protobuf.Message }).toDescriptor(
    'proto3',
  );
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${String(process.pid)}`;
  writeFileSync(tmp, descriptor.FileDescriptorSet.encode(set).finish());
  renameSync(tmp, path);
  return path;
}
