import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  VirtualKubeletError,
  errorCode,
  errorMessage,
  httpStatusOf,
  invalidInput,
  isRetryable,
  isVirtualKubeletError,
  notFound,
  unavailable,
  type ErrorCode,
} from '../../src/errors.js';
import { ApiError } from '../../src/kube/client.js';
import { localApi } from '../helpers/local-api.js';

/** What another copy of the package would throw: its own class, the same global brand. */
function foreign(code: string, message = 'from another copy'): Error {
  return Object.assign(new Error(message), {
    [Symbol.for('virtual-kubelet.error')]: true,
    code,
  });
}

test('errorCode follows the cause chain to the first error of the family', () => {
  assert.equal(errorCode(new Error('outer', { cause: notFound('gone') })), 'NotFound');
  const three = new Error('a', {
    cause: new Error('b', { cause: new Error('c', { cause: unavailable('down') }) }),
  });
  assert.equal(errorCode(three), 'Unavailable');
  assert.equal(isRetryable(three), true);
  assert.equal(isRetryable(new Error('outer', { cause: invalidInput('bad') })), false);
  // The outermost code wins: a wrapper with a code of its own means what it says.
  assert.equal(errorCode(unavailable('retry later', notFound('inner'))), 'Unavailable');
  // Causes that are not Errors are followed too; ends without a code are Internal.
  assert.equal(errorCode({ cause: { cause: notFound('x') } }), 'NotFound');
  assert.equal(errorCode(new Error('a', { cause: new Error('b') })), 'Internal');
  assert.equal(errorCode(new Error('a', { cause: 'a string' })), 'Internal');
  for (const value of [undefined, null, 'text', 42, {}]) assert.equal(errorCode(value), 'Internal');
});

test('errorCode ends on a cycle of causes and on a chain too long to follow', () => {
  const a = new Error('a');
  const b = new Error('b', { cause: a });
  Object.assign(a, { cause: b });
  assert.equal(errorCode(a), 'Internal');
  const self = new Error('self');
  Object.assign(self, { cause: self });
  assert.equal(errorCode(self), 'Internal');
  // A ring with an error of the family on it finds it, wherever the walk starts.
  const x = new Error('x');
  const coded = notFound('found', x);
  const y = new Error('y', { cause: coded });
  Object.assign(x, { cause: y });
  assert.equal(errorCode(x), 'NotFound');
  assert.equal(errorCode(y), 'NotFound');

  let deep: unknown = notFound('at the bottom');
  for (let i = 0; i < 16; i++) deep = new Error(`level ${String(i)}`, { cause: deep });
  assert.equal(errorCode(deep), 'NotFound', '16 links are followed');
  assert.equal(errorCode(new Error('one more', { cause: deep })), 'Internal');
});

test('the brand recognises errors of another copy of the package', async () => {
  const other = foreign('NotFound');
  assert.ok(!(other instanceof VirtualKubeletError));
  assert.equal(isVirtualKubeletError(other), true);
  assert.equal(errorCode(other), 'NotFound');
  assert.equal(errorCode(new Error('wrapped', { cause: other })), 'NotFound');
  assert.equal(isRetryable(foreign('Unavailable')), true);
  // A code this copy does not know, or a code without the brand, is not ours.
  assert.equal(isVirtualKubeletError(foreign('Teapot')), false);
  assert.equal(errorCode(foreign('Teapot')), 'Internal');
  const errno = Object.assign(new Error('no such file'), { code: 'NotFound' });
  assert.equal(isVirtualKubeletError(errno), false);
  assert.equal(errorCode(errno), 'Internal');

  // A second copy of the module, loaded under another URL: its own class, the same brand.
  const copy = (await import(
    new URL('../../src/errors.ts?copy=2', import.meta.url).href
  )) as typeof import('../../src/errors.js');
  assert.notEqual(copy.VirtualKubeletError, VirtualKubeletError);
  const theirs = copy.notFound('made by the copy');
  assert.ok(!(theirs instanceof VirtualKubeletError));
  assert.equal(isVirtualKubeletError(theirs), true);
  assert.equal(errorCode(theirs), 'NotFound');
  assert.equal(errorCode(new Error('outer', { cause: theirs })), 'NotFound');
  assert.equal(copy.errorCode(invalidInput('made here')), 'InvalidInput');
  assert.equal(copy.isVirtualKubeletError(new ApiError(404, 'x')), true);
  // The brand is not an own, enumerable property: logs and JSON do not show it.
  assert.deepEqual(Object.getOwnPropertySymbols(notFound('x')), []);
});

test('ApiError carries a code mapped from the HTTP status', () => {
  const cases: [number, string, ErrorCode][] = [
    [400, 'BadRequest', 'InvalidInput'],
    [401, 'Unauthorized', 'Internal'],
    [403, 'Forbidden', 'Internal'],
    [404, 'NotFound', 'NotFound'],
    [409, 'AlreadyExists', 'AlreadyExists'],
    [409, 'Conflict', 'Conflict'],
    [409, '', 'Conflict'],
    [410, 'Expired', 'Internal'],
    [422, 'Invalid', 'InvalidInput'],
    [429, 'TooManyRequests', 'Unavailable'],
    [500, 'InternalError', 'Unavailable'],
    [503, 'ServiceUnavailable', 'Unavailable'],
    [504, 'Timeout', 'Unavailable'],
    [418, '', 'Internal'],
    [0, '', 'Internal'],
  ];
  for (const [status, reason, code] of cases) {
    const err = new ApiError(status, `HTTP ${String(status)}`, { reason });
    assert.equal(err.code, code, `${String(status)} ${reason}`);
    assert.equal(errorCode(err), code);
    assert.equal(errorCode(new Error('wrapped', { cause: err })), code);
    assert.equal(err.status, status);
    assert.equal(err.reason, reason);
  }
  const body = {
    kind: 'Status',
    apiVersion: 'v1',
    status: 'Failure',
    message: 'pods "p" already exists',
    reason: 'AlreadyExists',
    details: { name: 'p', kind: 'pods' },
    code: 409,
  };
  const err = new ApiError(409, body.message, { body });
  assert.equal(err.code, 'AlreadyExists');
  assert.equal(err.reason, 'AlreadyExists', 'the reason comes from the body');
  assert.deepEqual(err.body, body);
  assert.equal(err.name, 'ApiError');
  assert.ok(err instanceof VirtualKubeletError);
  assert.equal(isVirtualKubeletError(err), true);
  assert.equal(err.retryable, false);
  assert.equal(new ApiError(409, 'stale').retryable, true);
});

test('KubeClient rejects with an ApiError that keeps the Status body', async (t) => {
  const { client } = await localApi(t, (req, res) => {
    if (req.url === '/api/v1/namespaces/a/pods/conflict') {
      res.writeHead(409, { 'content-type': 'application/json' });
      res.end(
        JSON.stringify({
          kind: 'Status',
          apiVersion: 'v1',
          status: 'Failure',
          message: 'the object has been modified',
          reason: 'Conflict',
          code: 409,
        }),
      );
      return;
    }
    res.writeHead(502, { 'content-type': 'text/plain' });
    res.end('bad gateway');
  });
  await assert.rejects(client.replace('/api/v1/namespaces/a/pods/conflict', {}), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(err.code, 'Conflict');
    assert.equal(err.status, 409);
    assert.equal(err.reason, 'Conflict');
    assert.equal(err.message, 'the object has been modified');
    assert.equal(err.body?.kind, 'Status');
    return true;
  });
  await assert.rejects(client.request('GET', '/api/v1/other'), (err: unknown) => {
    assert.ok(err instanceof ApiError);
    assert.equal(errorCode(err), 'Unavailable');
    assert.equal(err.body, undefined);
    assert.match(errorMessage(err), /GET \/api\/v1\/other: HTTP 502 bad gateway/);
    return true;
  });
});

test('each code has its retry rule and kubelet API status', () => {
  const table: [ErrorCode, boolean, number][] = [
    ['NotFound', false, 404],
    ['AlreadyExists', false, 409],
    ['Conflict', true, 409],
    ['InvalidInput', false, 400],
    ['Permanent', false, 500],
    ['NotImplemented', false, 501],
    ['Unavailable', true, 503],
    ['Internal', true, 500],
  ];
  for (const [code, retryable, http] of table) {
    const err = new VirtualKubeletError(code, code);
    assert.equal(err.retryable, retryable, code);
    assert.equal(isRetryable(err), retryable, code);
    assert.equal(isRetryable(foreign(code)), retryable, code);
    assert.equal(httpStatusOf(err), http, code);
    assert.equal(httpStatusOf(new Error('wrapped', { cause: err })), http, code);
  }
  assert.equal(isRetryable(new Error('plain')), true);
  assert.equal(httpStatusOf(new Error('plain')), 500);
  assert.equal(isRetryable('thrown text'), true);
});
