import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BUSYBOX_OS_RELEASE, DevRuntime, TEST_IMAGE_TAG } from '../../src/devcluster/index.js';

const bin = new URL('../../bin/virtual-kubelet', import.meta.url).pathname;

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 300_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

/** Processes whose command line mentions `dir` (containerd, the registries and shims carry it). */
function processesUsing(dir: string): string[] {
  const r = spawnSync('pgrep', ['-a', '-f', dir], { encoding: 'utf8' });
  return r.stdout.split('\n').filter((l) => l.trim() && !l.includes('pgrep'));
}

async function mountsBelow(dir: string): Promise<string[]> {
  return (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .filter((l) => l.split(' ')[4]?.startsWith(dir));
}

test('the dev runtime serves the test images, a password-protected registry and containerd, and leaves nothing behind', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-e2e-runtime-'));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  const runtime = new DevRuntime({ dir: join(dir, 'rt') });
  try {
    const info = await runtime.start();
    assert.match(info.runtimeEndpoint, /^unix:\/\/.*containerd\.sock$/);
    for (const name of ['busybox', 'pause', 'server'] as const) {
      assert.equal(info.images[name], `${info.registry}/${name}:${TEST_IMAGE_TAG}`);
      const res = await fetch(`http://${info.registry}/v2/${name}/manifests/${TEST_IMAGE_TAG}`, {
        headers: { accept: 'application/vnd.oci.image.manifest.v1+json' },
      });
      assert.equal(res.status, 200, `manifest of ${name}`);
      await res.arrayBuffer();
    }
    const manifestUrl = `http://${info.privateRegistry}/v2/private/busybox/manifests/${TEST_IMAGE_TAG}`;
    const anonymous = await fetch(manifestUrl);
    await anonymous.arrayBuffer();
    assert.equal(anonymous.status, 401, 'the private registry refuses anonymous pulls');
    const { username, password } = info.credentials;
    const authed = await fetch(manifestUrl, {
      headers: {
        authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`,
        accept: 'application/vnd.oci.image.manifest.v1+json',
      },
    });
    await authed.arrayBuffer();
    assert.equal(authed.status, 200, 'the private registry serves the image with the password');

    // containerd pulls from the plain-HTTP registry and runs the busybox image with runc.
    const sock = runtime.socketPath;
    const ctr = (...args: string[]) =>
      spawnSync('ctr', ['--address', sock, '-n', 'k8s.io', ...args], { encoding: 'utf8' });
    const pull = ctr('images', 'pull', '--plain-http', info.images.busybox);
    assert.equal(pull.status, 0, pull.stderr);
    const cat = ctr('run', '--rm', info.images.busybox, 'vk-test-cat', 'cat', '/etc/os-release');
    assert.equal(cat.status, 0, cat.stderr);
    assert.equal(cat.stdout, BUSYBOX_OS_RELEASE);
  } finally {
    await runtime.stop();
  }
  assert.deepEqual(processesUsing(join(dir, 'rt')), []);
  assert.deepEqual(await mountsBelow(dir), []);
  await rm(dir, { recursive: true, force: true });
});

test('dev-runtime up, status and down run the runtime in the background', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vk-e2e-runtime-cli-'));
  await writeFile(join(dir, 'owner.pid'), String(process.pid));
  try {
    const up = await cli(['dev-runtime', 'up', '--dir', dir]);
    assert.equal(up.code, 0, up.stderr);
    assert.match(up.stdout, /runtime endpoint: unix:\/\/.*containerd\.sock/);
    assert.match(up.stdout, /image busybox: 127\.0\.0\.1:\d+\/busybox:/);
    const status = await cli(['dev-runtime', 'status', '--dir', dir]);
    assert.equal(status.code, 0);
    assert.match(status.stdout, /ready/);
    const down = await cli(['dev-runtime', 'down', '--dir', dir]);
    assert.equal(down.code, 0, down.stderr);
    const after = await cli(['dev-runtime', 'status', '--dir', dir]);
    assert.equal(after.code, 3);
    assert.deepEqual(processesUsing(dir), []);
  } finally {
    await cli(['dev-runtime', 'down', '--dir', dir]);
    await rm(dir, { recursive: true, force: true });
  }
});
