import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Agent } from 'node:https';
import { request } from 'node:https';
import { test } from 'node:test';
import { WebhookAuthorizer } from '../../../src/api/auth.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { startKubeletServer, type Answer } from '../../helpers/kubelet-server.js';
import { localApi } from '../../helpers/local-api.js';
import { waitFor } from '../../helpers/wait.js';

const WAIT = { timeoutMs: 20_000, intervalMs: 20 };

test('a TokenReview flood: cached identities still authenticate, past the queue 429, junk evicts nothing', async (t) => {
  const reviewed: string[] = [];
  // Reviews of made-up tokens hang until released: the review queue stays full meanwhile.
  const held: (() => void)[] = [];
  let holding = true;
  const { client } = await localApi(t, (req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      const spec = (JSON.parse(body) as { spec: Record<string, unknown> }).spec;
      res.setHeader('content-type', 'application/json');
      if (req.url?.endsWith('/subjectaccessreviews')) {
        res.end(JSON.stringify({ status: { allowed: true } }));
        return;
      }
      const token = String(spec.token);
      reviewed.push(token);
      const good = token.startsWith('good-');
      const answer = (): void => {
        res.end(
          JSON.stringify({
            status: { authenticated: good, ...(good ? { user: { username: token } } : {}) },
          }),
        );
      };
      if (good || !holding) answer();
      else held.push(answer);
    });
  });
  const authorizer = new WebhookAuthorizer({
    client,
    nodeName: 'kubelet-test',
    maxReviewsInFlight: 8,
    maxReviewsQueued: 256,
    tokenCacheSize: 16,
    rejectedTokenCacheSize: 16,
  });
  const provider = new MockProvider({ nodeName: 'kubelet-test' });
  t.after(() => provider.close());
  const k = await startKubeletServer(t, {
    provider,
    authorizer,
    limits: { maxConnections: 4_096 },
  });
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity, rejectUnauthorized: false });
  t.after(() => agent.destroy());
  const get = (token: string): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request(
        {
          host: '127.0.0.1',
          port: k.port,
          path: '/healthz',
          agent,
          headers: { authorization: `Bearer ${token}` },
        },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  assert.equal((await get('good-metrics-server')).status, 200);
  let floodAnswered = 0;
  const flood = Array.from({ length: 300 }, () =>
    get(`junk-${randomUUID()}`).finally(() => floodAnswered++),
  );
  // 8 in flight and 256 waiting: the queue is full.
  await waitFor(() => held.length === 8, WAIT);
  const busy = await waitFor(async () => {
    const a = await get(`junk-${randomUUID()}`);
    return a.status === 429 && a;
  }, WAIT);
  assert.equal(busy.headers['retry-after'], '1');
  // A token the node knows still works during the flood; one it has never seen must wait.
  assert.equal((await get('good-metrics-server')).status, 200);
  const unseen = await get('good-newcomer');
  assert.equal(unseen.status, 429);
  assert.match(unseen.body, /too many authentication requests/);
  const upgrade = await k.refusedUpgrade('/portForward/default/web', 'good-streamer');
  assert.equal(upgrade.status, 429);

  // 264 of the flood are held (8 reviews, 256 waiting): the other 36 are answered 429 once they
  // arrive, which with 300 TLS handshakes on a busy machine can take a while.
  await waitFor(() => floodAnswered >= 36, WAIT);
  holding = false;
  for (const answer of held.splice(0)) answer();
  await waitFor(() => {
    for (const answer of held.splice(0)) answer();
    return reviewed.length >= 265;
  }, WAIT);
  const statuses = (await Promise.all(flood)).map((a) => a.status);
  const count = (code: number): number => statuses.filter((s) => s === code).length;
  assert.equal(count(401) + count(429), 300, `statuses: ${[...new Set(statuses)].join(', ')}`);
  assert.ok(count(429) >= 36, `${String(count(429))} answered 429`);
  assert.ok(count(401) <= 264);

  // Hundreds of rejected tokens went through a cache of 16: the identity was never evicted.
  const before = reviewed.filter((r) => r === 'good-metrics-server').length;
  assert.equal((await get('good-metrics-server')).status, 200);
  assert.equal(reviewed.filter((r) => r === 'good-metrics-server').length, before);
  assert.equal(before, 1);
  // A rejected token is remembered for a while: asking again makes no review.
  const junk = `junk-${randomUUID()}`;
  assert.equal((await get(junk)).status, 401);
  assert.equal((await get(junk)).status, 401);
  assert.equal(reviewed.filter((r) => r === junk).length, 1);
  // Once the flood is over, the newcomer authenticates.
  assert.equal((await get('good-newcomer')).status, 200);
});
