import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import {
  COREDNS_VERSION,
  ETCD_VERSION,
  KUBERNETES_VERSION,
} from '../../../src/devcluster/versions.js';
import { HELM_VERSION } from '../../../src/devcluster/helm.js';

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

test('the kube-proxy go.mod pins every module the control-plane go.mod pins, at the same version', async () => {
  const pins = (text: string): Map<string, string> =>
    new Map(
      [...text.matchAll(/^\t(\S+) (v\S+)(?: \/\/ indirect)?$/gm)].map((m) => [
        m[1] ?? '',
        m[2] ?? '',
      ]),
    );
  const control = pins(await mod('kubernetes'));
  const proxy = pins(await mod('kube-proxy'));
  assert.ok(control.size > 100, `expected the control plane's pins, found ${String(control.size)}`);
  for (const [path, version] of control)
    assert.equal(proxy.get(path), version, `${path} must be ${version} in modules/kube-proxy`);
  assert.match(await mod('kube-proxy'), /^\tk8s\.io\/kubernetes\/cmd\/kube-proxy$/m);
});

test('the CoreDNS go.mod pins github.com/coredns/coredns to COREDNS_VERSION', async () => {
  assert.match(
    await mod('coredns'),
    new RegExp(`github\\.com/coredns/coredns ${COREDNS_VERSION.replace(/\./g, '\\.')}\\b`, 'm'),
  );
});

test('the helm go.mod pins helm.sh/helm/v4 to HELM_VERSION', async () => {
  assert.match(
    await mod('helm'),
    new RegExp(`^\\s*helm\\.sh/helm/v4 ${HELM_VERSION.replace(/\./g, '\\.')}\\b`, 'm'),
  );
  assert.match(await mod('helm'), /^tool helm\.sh\/helm\/v4\/cmd\/helm$/m);
});
