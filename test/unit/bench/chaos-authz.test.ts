import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ROUTES } from '../../../src/api/routes/table.js';
import {
  expectedOutcome,
  IDENTITIES,
  kubeletSubresources,
  outcomeOf,
  samplePath,
} from '../../../bench/chaos/authz-rules.js';

describe('chaos authz-matrix: the kubelet rules', () => {
  test('maps paths to node subresources as pkg/kubelet/server/auth.go does', () => {
    assert.deepEqual(kubeletSubresources('/stats/summary'), ['stats']);
    assert.deepEqual(kubeletSubresources('/stats'), ['stats']);
    assert.deepEqual(kubeletSubresources('/metrics'), ['metrics']);
    assert.deepEqual(kubeletSubresources('/metrics/resource'), ['metrics']);
    assert.deepEqual(kubeletSubresources('/logs/'), ['log']);
    assert.deepEqual(kubeletSubresources('/checkpoint/ns/p/c'), ['checkpoint']);
    assert.deepEqual(kubeletSubresources('/pods'), ['pods', 'proxy']);
    assert.deepEqual(kubeletSubresources('/runningpods'), ['pods', 'proxy']);
    assert.deepEqual(kubeletSubresources('/runningpods/'), ['pods', 'proxy']);
    assert.deepEqual(kubeletSubresources('/healthz'), ['healthz', 'proxy']);
    assert.deepEqual(kubeletSubresources('/healthz/ping'), ['healthz', 'proxy']);
    assert.deepEqual(kubeletSubresources('/configz'), ['configz', 'proxy']);
    assert.deepEqual(kubeletSubresources('/containerLogs/ns/p/c'), ['proxy']);
    assert.deepEqual(kubeletSubresources('/exec/ns/p/c'), ['proxy']);
    assert.deepEqual(kubeletSubresources('/spec/'), ['proxy']);
    // A prefix is a whole segment: /statsx is not /stats.
    assert.deepEqual(kubeletSubresources('/statsx'), ['proxy']);
    assert.deepEqual(kubeletSubresources('/podsx'), ['proxy']);
  });

  test('expects 401 without a known identity, 403 without the subresource, else allowed', () => {
    assert.equal(expectedOutcome('anonymous', '/stats/summary'), '401');
    assert.equal(expectedOutcome('untrusted-cert', '/pods'), '401');
    assert.equal(expectedOutcome('sa-no-rbac', '/healthz'), '403');
    assert.equal(expectedOutcome('sa-stats-only', '/stats/summary'), 'allowed');
    assert.equal(expectedOutcome('sa-stats-only', '/metrics'), '403');
    assert.equal(expectedOutcome('sa-stats-only', '/exec/ns/p/c'), '403');
    assert.equal(expectedOutcome('apiserver-client', '/exec/ns/p/c'), 'allowed');
    assert.equal(expectedOutcome('apiserver-client', '/no-such-path'), 'allowed');
    assert.equal(expectedOutcome('node-self', '/pods'), '403');
    for (const id of IDENTITIES)
      assert.ok(['401', '403', 'allowed'].includes(expectedOutcome(id, '/')));
  });

  test('reads statuses: 401 and 403 as such, a route answer as allowed, 500 and no answer as errors', () => {
    assert.equal(outcomeOf(401), '401');
    assert.equal(outcomeOf(403), '403');
    for (const s of [200, 400, 404, 405, 501]) assert.equal(outcomeOf(s), 'allowed');
    assert.equal(outcomeOf(500), 'error');
    assert.equal(outcomeOf(0), 'error');
  });

  test('sample paths fill every segment and drop optional ones', () => {
    assert.equal(
      samplePath('/exec/:namespace/:pod/:uid?/:container', {
        namespace: 'n',
        pod: 'p',
        container: 'c',
      }),
      '/exec/n/p/c',
    );
    assert.equal(samplePath('/healthz/:check?'), '/healthz');
    assert.equal(samplePath('/pods'), '/pods');
  });

  test('our route table asks for the subresources the kubelet would', () => {
    for (const route of ROUTES)
      assert.deepEqual(
        [...route.subresources],
        kubeletSubresources(samplePath(route.pattern)),
        route.pattern,
      );
  });
});
