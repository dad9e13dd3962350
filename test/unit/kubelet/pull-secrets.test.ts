import assert from 'node:assert/strict';
import { Buffer } from 'node:buffer';
import { test } from 'node:test';
import { parsePullSecret, PullSecretError } from '../../../src/kubelet/pull-secrets.js';
import type { V1Secret } from '../../../src/wire.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

const configJson = (name: string, config: unknown): V1Secret => ({
  metadata: { name },
  type: 'kubernetes.io/dockerconfigjson',
  data: { '.dockerconfigjson': b64(JSON.stringify(config)) },
});

const dockercfg = (name: string, config: unknown): V1Secret => ({
  metadata: { name },
  type: 'kubernetes.io/dockercfg',
  data: { '.dockercfg': b64(JSON.stringify(config)) },
});

/** Asserts `fn` throws a PullSecretError with `problem` whose message names `name` and not `secret`. */
function assertProblem(fn: () => unknown, problem: string, name: string, secret?: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof PullSecretError, String(err));
    assert.equal(err.problem, problem);
    assert.match(err.message, new RegExp(`"${name}"`));
    if (secret !== undefined) assert.ok(!err.message.includes(secret), err.message);
    return true;
  });
}

test('a dockerconfigjson secret gives one credential per entry of auths, in order, with every field', () => {
  const got = parsePullSecret(
    configJson('regcred', {
      auths: {
        'registry.example.com:5000': {
          username: 'vk',
          password: 's3cret',
          auth: b64('vk:s3cret'),
          email: 'ignored@example.com',
        },
        'https://index.docker.io/v1/': { identitytoken: 'id-token' },
        'ghcr.io/team': { registrytoken: 'reg-token' },
      },
    }),
  );
  assert.deepEqual(got, [
    {
      registry: 'registry.example.com:5000',
      username: 'vk',
      password: 's3cret',
      auth: b64('vk:s3cret'),
    },
    { registry: 'https://index.docker.io/v1/', identityToken: 'id-token' },
    { registry: 'ghcr.io/team', registryToken: 'reg-token' },
  ]);
});

test('a dockercfg secret is a map of registries without auths', () => {
  assert.deepEqual(
    parsePullSecret(dockercfg('old', { 'quay.io': { username: 'u', password: 'p' } })),
    [{ registry: 'quay.io', username: 'u', password: 'p' }],
  );
});

test('auth gives username and password when the entry has neither; a password may hold colons', () => {
  assert.deepEqual(
    parsePullSecret(configJson('a', { auths: { 'r.example': { auth: b64('user:pa:ss') } } })),
    [{ registry: 'r.example', username: 'user', password: 'pa:ss', auth: b64('user:pa:ss') }],
  );
  // The entry's own username and password win over auth.
  assert.deepEqual(
    parsePullSecret(
      configJson('b', {
        auths: { 'r.example': { username: 'u', password: 'p', auth: b64('x:y') } },
      }),
    ),
    [{ registry: 'r.example', username: 'u', password: 'p', auth: b64('x:y') }],
  );
  // An auth that is not user:password is passed on as it is, for the runtime to judge.
  assert.deepEqual(
    parsePullSecret(configJson('c', { auths: { 'r.example': { auth: b64('nocolon') } } })),
    [{ registry: 'r.example', auth: b64('nocolon') }],
  );
});

test('empty fields count as absent, and an empty auths gives no credentials', () => {
  assert.deepEqual(
    parsePullSecret(
      configJson('e', { auths: { 'r.example': { username: '', password: '', auth: '' } } }),
    ),
    [{ registry: 'r.example' }],
  );
  assert.deepEqual(parsePullSecret(configJson('none', { auths: {} })), []);
});

test('content that is not JSON is Malformed, and the message does not quote it', () => {
  const secret: V1Secret = {
    metadata: { name: 'broken' },
    type: 'kubernetes.io/dockerconfigjson',
    data: { '.dockerconfigjson': b64('{"auths": {"r": {"password": "hunter2"') },
  };
  assertProblem(() => parsePullSecret(secret), 'Malformed', 'broken', 'hunter2');
});

test('a dockerconfigjson without auths, or entries that are not objects or strings, is Malformed', () => {
  assertProblem(
    () => parsePullSecret(configJson('flat', { 'r.example': { password: 'hunter2' } })),
    'Malformed',
    'flat',
    'hunter2',
  );
  assertProblem(() => parsePullSecret(configJson('arr', [])), 'Malformed', 'arr');
  assertProblem(
    () => parsePullSecret(configJson('entry', { auths: { 'r.example': 'hunter2' } })),
    'Malformed',
    'entry',
    'hunter2',
  );
  assertProblem(
    () => parsePullSecret(configJson('num', { auths: { 'r.example': { password: 42 } } })),
    'Malformed',
    'num',
  );
  assertProblem(() => parsePullSecret(dockercfg('cfg', 'hunter2')), 'Malformed', 'cfg', 'hunter2');
});

test('a secret of another type is WrongType, even with a config under the right key', () => {
  assertProblem(
    () =>
      parsePullSecret({
        metadata: { name: 'opaque' },
        type: 'Opaque',
        data: { '.dockerconfigjson': b64(JSON.stringify({ auths: {} })) },
      }),
    'WrongType',
    'opaque',
  );
  assertProblem(() => parsePullSecret({ metadata: { name: 'untyped' } }), 'WrongType', 'untyped');
});

test('a secret without its key, or with the other type key, is MissingKey', () => {
  assertProblem(
    () => parsePullSecret({ metadata: { name: 'empty' }, type: 'kubernetes.io/dockerconfigjson' }),
    'MissingKey',
    'empty',
  );
  assertProblem(
    () =>
      parsePullSecret({
        metadata: { name: 'swapped' },
        type: 'kubernetes.io/dockercfg',
        data: { '.dockerconfigjson': b64('{}') },
      }),
    'MissingKey',
    'swapped',
  );
  assertProblem(
    () =>
      parsePullSecret({
        metadata: { name: 'blank' },
        type: 'kubernetes.io/dockerconfigjson',
        data: { '.dockerconfigjson': '' },
      }),
    'MissingKey',
    'blank',
  );
});
