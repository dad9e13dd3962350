import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readFile } from 'node:fs/promises';
import { buildImage, run } from '../../scripts/image.js';

test('the image builds FROM scratch with buildah, exports an OCI archive, and its entrypoint runs virtual-kubelet', async (t) => {
  const started = Date.now();
  const built = await buildImage();
  t.diagnostic(`image built and exported in ${String(Date.now() - started)} ms`);
  const archive = await run('tar', ['-tf', built.archive]);
  assert.match(archive, /^oci-layout$/m);
  assert.match(archive, /^index\.json$/m);

  const inspected = JSON.parse(
    await run('buildah', [...built.storageFlags, 'inspect', '--type', 'image', built.image]),
  ) as { OCIv1: { config: { Entrypoint?: string[]; User?: string } } };
  const { Entrypoint: entrypoint = [], User: user } = inspected.OCIv1.config;
  assert.deepEqual(entrypoint, ['/usr/bin/node', '/app/bin/virtual-kubelet']);
  assert.equal(user, '65532:65532');

  const container = (
    await run('buildah', [...built.storageFlags, 'from', '--pull-never', built.image])
  ).trim();
  t.after(() => run('buildah', [...built.storageFlags, 'rm', container]));
  const pkg = JSON.parse(
    await readFile(new URL('../../package.json', import.meta.url), 'utf8'),
  ) as { version: string };
  const out = await run('buildah', [
    ...built.storageFlags,
    'run',
    '--network',
    'none',
    container,
    '--',
    ...entrypoint,
    'version',
  ]);
  assert.match(out, new RegExp(`^virtual-kubelet ${pkg.version.replace(/\./g, '\\.')} `));
  t.diagnostic(`built and run in ${String(Date.now() - started)} ms`);
});
