import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { ETCD_VERSION, KUBERNETES_VERSION } from '../../../src/devcluster/versions.js';

const mod = (name: string): Promise<string> =>
  readFile(new URL(`../../../src/devcluster/modules/${name}/go.mod`, import.meta.url), 'utf8');

test('the Kubernetes go.mod pins k8s.io/kubernetes and every staging module to one release', async () => {
  const gomod = await mod('kubernetes');
  assert.match(
    gomod,
    new RegExp(
      `^\\s*(?:require )?k8s\\.io/kubernetes ${KUBERNETES_VERSION.replace(/\./g, '\\.')}\\b`,
      'm',
    ),
  );
  const staging = `v0.${KUBERNETES_VERSION.slice(3)}`;
  const replaces = [...gomod.matchAll(/^\t(k8s\.io\/\S+) => (\S+) (\S+)$/gm)];
  assert.ok(
    replaces.length >= 30,
    `expected the staging replaces, found ${String(replaces.length)}`,
  );
  for (const [, from, to, version] of replaces) {
    assert.equal(to, from);
    assert.equal(version, staging, `${from ?? ''} must be pinned to ${staging}`);
  }
});

test('the etcd go.mod pins the etcd server module to ETCD_VERSION', async () => {
  assert.match(
    await mod('etcd'),
    new RegExp(`go\\.etcd\\.io/etcd/server/v3 ${ETCD_VERSION.replace(/\./g, '\\.')}\\b`, 'm'),
  );
  assert.match(ETCD_VERSION, /^v3\.6\./);
});
