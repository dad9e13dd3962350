import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  credentialsForImage,
  imageRepository,
  normalizeRegistryKey,
  registryKeyMatches,
} from '../../../src/kubelet/image-credentials.js';
import type { RegistryCredential } from '../../../src/provider.js';

const cred = (registry: string, username = registry): RegistryCredential => ({
  registry,
  username,
  password: 'p',
});
const users = (list: readonly RegistryCredential[]): (string | undefined)[] =>
  list.map((c) => c.username);

test('a key loses its scheme, its /v1/ or /v2/ and its trailing slash', () => {
  assert.equal(normalizeRegistryKey('https://index.docker.io/v1/'), 'index.docker.io');
  assert.equal(
    normalizeRegistryKey('http://registry.example.com:5000/'),
    'registry.example.com:5000',
  );
  assert.equal(normalizeRegistryKey('registry.example.com/v2/team/'), 'registry.example.com/team');
  assert.equal(normalizeRegistryKey('quay.io/coreos'), 'quay.io/coreos');
  assert.equal(normalizeRegistryKey('127.0.0.1:5001'), '127.0.0.1:5001');
});

test('an image without a registry host is on docker.io, a one-part name in library/', () => {
  assert.deepEqual(imageRepository('busybox'), { host: 'docker.io', path: 'library/busybox' });
  assert.deepEqual(imageRepository('busybox:1.36'), { host: 'docker.io', path: 'library/busybox' });
  assert.deepEqual(imageRepository('team/app:v1'), { host: 'docker.io', path: 'team/app' });
  assert.deepEqual(imageRepository('docker.io/busybox'), {
    host: 'docker.io',
    path: 'library/busybox',
  });
  assert.deepEqual(imageRepository('index.docker.io/team/app'), {
    host: 'docker.io',
    path: 'team/app',
  });
  assert.deepEqual(imageRepository('127.0.0.1:5001/private/busybox:v1@sha256:abc'), {
    host: '127.0.0.1:5001',
    path: 'private/busybox',
  });
  assert.deepEqual(imageRepository('localhost/app'), { host: 'localhost', path: 'app' });
  assert.deepEqual(imageRepository('ghcr.io/org/app@sha256:0123'), {
    host: 'ghcr.io',
    path: 'org/app',
  });
});

test('a key matches the same host and port, and a prefix of the repository path', () => {
  const repo = imageRepository('registry.example.com:5000/team/app:v1');
  assert.ok(registryKeyMatches('registry.example.com:5000', repo));
  assert.ok(registryKeyMatches('registry.example.com:5000/team', repo));
  assert.ok(!registryKeyMatches('registry.example.com', repo), 'the port counts');
  assert.ok(!registryKeyMatches('registry.example.com:5001', repo));
  assert.ok(!registryKeyMatches('registry.example.com:5000/other', repo));
  assert.ok(!registryKeyMatches('example.com:5000', repo), 'as many host parts');
  assert.ok(!registryKeyMatches('other.example.com:5000', repo));
});

test('a glob in a part of the key host matches that part only', () => {
  const repo = imageRepository('eu.registry.example.com/app');
  assert.ok(registryKeyMatches('*.registry.example.com', repo));
  assert.ok(registryKeyMatches('e?.registry.example.com', repo));
  assert.ok(!registryKeyMatches('*.example.com', repo));
  assert.ok(!registryKeyMatches('*.registry.example.org', repo));
});

test('credentials for an image: matching keys only, most specific first, then in the given order', () => {
  const creds = [
    cred('registry.example.com', 'host-1'),
    cred('https://registry.example.com/team/', 'team'),
    cred('other.example.com', 'other'),
    cred('registry.example.com/', 'host-2'),
  ];
  assert.deepEqual(users(credentialsForImage('registry.example.com/team/app:v1', creds)), [
    'team',
    'host-1',
    'host-2',
  ]);
  assert.deepEqual(users(credentialsForImage('registry.example.com/solo/app', creds)), [
    'host-1',
    'host-2',
  ]);
  assert.deepEqual(credentialsForImage('unknown.example.com/app', creds), []);
  assert.deepEqual(credentialsForImage('busybox', creds), [], 'docker.io takes none of them');
  assert.deepEqual(credentialsForImage('busybox', []), []);
});

test('Docker Hub images take the credentials of docker.io, or else of index.docker.io', () => {
  const hub = [cred('https://index.docker.io/v1/', 'index'), cred('quay.io', 'quay')];
  for (const image of ['busybox', 'team/app:v1', 'docker.io/team/app', 'index.docker.io/x/y'])
    assert.deepEqual(users(credentialsForImage(image, hub)), ['index'], image);
  assert.deepEqual(credentialsForImage('quay.io/x/y', hub).length, 1);
  assert.deepEqual(credentialsForImage('ghcr.io/x/y', hub), [], 'not a Docker Hub image');
  // A docker.io key matches the images themselves; index.docker.io is then not consulted.
  const both = [cred('index.docker.io', 'index'), cred('docker.io', 'docker')];
  assert.deepEqual(users(credentialsForImage('busybox:1.36', both)), ['docker']);
  assert.deepEqual(users(credentialsForImage('docker.io/library/busybox', both)), ['docker']);
});

test('the private registry of the dev runtime: host and port, no scheme', () => {
  const creds = [cred('127.0.0.1:5001', 'vk')];
  assert.deepEqual(users(credentialsForImage('127.0.0.1:5001/private/busybox:v1', creds)), ['vk']);
  assert.deepEqual(credentialsForImage('127.0.0.1:5000/busybox:v1', creds), []);
});
