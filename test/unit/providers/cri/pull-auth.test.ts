import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pullAuths } from '../../../../src/providers/cri/index.js';
import type { RegistryCredential } from '../../../../src/provider.js';

test('each credential that matches the image becomes a CRI AuthConfig, in the order to try', () => {
  const creds: RegistryCredential[] = [
    { registry: '127.0.0.1:5001', username: 'vk', password: 'p1', auth: 'dms6cDE=' },
    { registry: 'other.example', username: 'x', password: 'y' },
    { registry: 'http://127.0.0.1:5001/private/', identityToken: 'id', registryToken: 'reg' },
  ];
  assert.deepEqual(pullAuths('127.0.0.1:5001/private/busybox:v1', creds), [
    { identity_token: 'id', registry_token: 'reg' },
    { username: 'vk', password: 'p1', auth: 'dms6cDE=' },
  ]);
});

test('no matching credential: no AuthConfig, the pull is anonymous', () => {
  assert.deepEqual(pullAuths('busybox:1.36', [{ registry: 'quay.io', username: 'u' }]), []);
  assert.deepEqual(pullAuths('127.0.0.1:5000/busybox:v1', []), []);
});
