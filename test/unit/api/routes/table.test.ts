import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HttpError } from '../../../../src/api/routes/context.js';
import { parseLogOptions } from '../../../../src/api/routes/logs.js';
import {
  authorizationOf,
  findRoute,
  hasTraversal,
  matchPattern,
  ROUTES,
  routeLabel,
} from '../../../../src/api/routes/table.js';
import { CAPABILITIES } from '../../../../src/provider.js';

test('patterns: literal segments, parameters, optional parameters, one trailing slash', () => {
  const exec = '/exec/:namespace/:pod/:uid?/:container';
  assert.deepEqual(matchPattern(exec, '/exec/ns/p/c'), {
    namespace: 'ns',
    pod: 'p',
    container: 'c',
  });
  assert.deepEqual(matchPattern(exec, '/exec/ns/p/u/c'), {
    namespace: 'ns',
    pod: 'p',
    uid: 'u',
    container: 'c',
  });
  assert.equal(matchPattern(exec, '/exec/ns/p'), undefined);
  assert.equal(matchPattern(exec, '/exec/ns/p/u/c/x'), undefined);
  assert.equal(matchPattern(exec, '/attach/ns/p/c'), undefined);
  assert.deepEqual(matchPattern('/runningpods', '/runningpods/'), {});
  assert.deepEqual(matchPattern('/healthz/:check?', '/healthz'), {});
  assert.deepEqual(matchPattern('/healthz/:check?', '/healthz/ping'), { check: 'ping' });
});

test('findRoute: a route, the family of a known first segment, or nothing', () => {
  assert.equal(findRoute('/stats/summary')?.route?.pattern, '/stats/summary');
  assert.equal(findRoute('/metrics')?.route?.pattern, '/metrics');
  assert.equal(findRoute('/metrics/resource')?.route?.capability, 'metricsResource');
  const family = findRoute('/metrics/cadvisor');
  assert.ok(family && !family.route);
  assert.deepEqual(
    family.family.map((r) => r.pattern),
    ['/metrics', '/metrics/resource'],
  );
  assert.equal(findRoute('/logs/'), undefined);
});

test('authorization attributes and metric labels come from the table', () => {
  assert.deepEqual(authorizationOf('GET', findRoute('/stats/summary')), {
    verb: 'get',
    subresources: ['stats'],
  });
  assert.deepEqual(authorizationOf('POST', findRoute('/stats/other')), {
    verb: 'create',
    subresources: ['stats'],
  });
  assert.deepEqual(authorizationOf('GET', findRoute('/pods')), {
    verb: 'get',
    subresources: ['pods', 'proxy'],
  });
  assert.deepEqual(authorizationOf('DELETE', undefined), {
    verb: 'delete',
    subresources: ['proxy'],
  });
  assert.equal(routeLabel(findRoute('/containerLogs/a/b/c')), '/containerLogs');
  assert.equal(routeLabel(findRoute('/nothing')), 'other');
});

test('every route names a known capability, known methods and at least one subresource', () => {
  for (const r of ROUTES) {
    assert.ok(r.capability === undefined || r.capability in CAPABILITIES, r.pattern);
    assert.ok(r.methods.length > 0 && r.methods.every((m) => /^[A-Z]+$/.test(m)), r.pattern);
    assert.ok(r.subresources.length > 0, r.pattern);
  }
  const patterns = ROUTES.map((r) => r.pattern);
  assert.equal(new Set(patterns).size, patterns.length);
});

test('traversal in the raw target is refused, encoded or not', () => {
  assert.ok(hasTraversal('/containerLogs/../../etc/passwd'));
  assert.ok(hasTraversal('/containerLogs/%2e%2e/x'));
  assert.ok(hasTraversal('/a//b'));
  assert.ok(!hasTraversal('/runningpods/'));
  assert.ok(!hasTraversal('/exec/a/b/c?command=..'));
});

test('log options: 400 for values that are no numbers, 422 for invalid ones', () => {
  const q = (s: string) => new URLSearchParams(s);
  assert.deepEqual(parseLogOptions(q('follow=true&tailLines=5&timestamps=1')), {
    follow: true,
    previous: false,
    timestamps: true,
    tailLines: 5,
  });
  assert.equal(parseLogOptions(q('tail=3')).tailLines, 3);
  const status = (s: string): number => {
    try {
      parseLogOptions(q(s));
      return 200;
    } catch (err) {
      return err instanceof HttpError ? err.status : 0;
    }
  };
  assert.equal(status('tailLines=x'), 400);
  assert.equal(status('sinceTime=yesterday'), 400);
  assert.equal(status('limitBytes=0'), 422);
  assert.equal(status('sinceSeconds=5&sinceTime=2020-01-01T00:00:00Z'), 422);
});
