import type { V1Pod } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { WebSocket } from 'ws';
import type { HttpLimits } from '../../../src/api/server.js';
import { MockProvider } from '../../../src/providers/mock/index.js';
import { startKubeletServer } from '../../helpers/kubelet-server.js';
import { waitFor } from '../../helpers/wait.js';

const POD: V1Pod = {
  metadata: { namespace: 'default', name: 'web', uid: 'uid-1' },
  spec: { containers: [{ name: 'app', image: 'x' }] },
};
const WAIT = { timeoutMs: 5_000, intervalMs: 10 };

async function serve(t: TestContext, limits: HttpLimits, logIntervalMs = 0) {
  const provider = new MockProvider({ nodeName: 'kubelet-test', config: { logIntervalMs } });
  t.after(() => provider.close());
  await provider.createPod(structuredClone(POD), AbortSignal.timeout(5_000));
  const kubelet = await startKubeletServer(t, { provider, limits });
  kubelet.pods.add(POD);
  return kubelet;
}

/** A raw TLS connection that records what it reads and when it closed. */
interface Raw {
  readonly socket: TLSSocket;
  text: string;
  lastDataAtMs: number;
  closedAtMs: number | undefined;
}

function open(port: number): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    const raw: Raw = { socket, text: '', lastDataAtMs: 0, closedAtMs: undefined };
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      raw.text += d;
      raw.lastDataAtMs = Date.now();
    });
    socket.on('close', () => (raw.closedAtMs = Date.now()));
    socket.once('secureConnect', () => resolve(raw));
    socket.once('error', reject);
  });
}

const GET = (path: string): string =>
  `GET ${path} HTTP/1.1\r\nHost: kubelet\r\nAuthorization: Bearer alice\r\n\r\n`;

/** Answers on `raw` so far, by their status line. */
const answers = (raw: Raw): number => raw.text.match(/^HTTP\/1\.1 200 /gm)?.length ?? 0;

test('a client sending its headers byte by byte is cut at the header timeout', async (t) => {
  const k = await serve(t, { headersTimeoutMs: 300, requestTimeoutMs: 10_000 });
  const raw = await open(k.port);
  const start = Date.now();
  raw.socket.write('GET /healthz HTTP/1.1\r\nHost: kubelet\r\n');
  const drip = setInterval(() => {
    if (!raw.socket.destroyed) raw.socket.write('a');
  }, 20);
  t.after(() => clearInterval(drip));
  await waitFor(() => raw.closedAtMs !== undefined, WAIT);
  clearInterval(drip);
  const took = (raw.closedAtMs ?? 0) - start;
  assert.ok(took >= 250 && took < 3_000, `closed after ${String(took)} ms`);
  assert.doesNotMatch(raw.text, /^HTTP\/1\.1 200/);
});

test('an idle keep-alive connection is closed after the idle timeout', async (t) => {
  const k = await serve(t, { idleTimeoutMs: 200 });
  const raw = await open(k.port);
  raw.socket.write(GET('/healthz'));
  await waitFor(() => answers(raw) === 1, WAIT);
  // Still open for a second request right away: keep-alive works.
  raw.socket.write(GET('/healthz'));
  await waitFor(() => answers(raw) === 2, WAIT);
  const idleFrom = raw.lastDataAtMs;
  await waitFor(() => raw.closedAtMs !== undefined, WAIT);
  const idle = (raw.closedAtMs ?? 0) - idleFrom;
  assert.ok(idle >= 150 && idle < 2_000, `closed after ${String(idle)} ms idle`);
});

test('connections past the cap are refused while the open ones carry on', async (t) => {
  const k = await serve(t, { maxConnections: 2 });
  const first = await open(k.port);
  const second = await open(k.port);
  const refused = await open(k.port).then(
    (raw) => waitFor(() => raw.closedAtMs !== undefined, WAIT),
    () => true,
  );
  assert.ok(refused);
  for (const raw of [first, second]) raw.socket.write(GET('/healthz'));
  await waitFor(() => answers(first) === 1 && answers(second) === 1, WAIT);
  first.socket.destroy();
  await waitFor(() => first.closedAtMs !== undefined, WAIT);
  // A closed connection frees its place.
  const third = await waitFor(async () => {
    const raw = await open(k.port);
    raw.socket.write(GET('/healthz'));
    return waitFor(() => answers(raw) === 1 || raw.closedAtMs !== undefined, WAIT).then(() =>
      answers(raw) === 1 ? raw : (raw.socket.destroy(), false),
    );
  }, WAIT);
  third.socket.destroy();
  second.socket.destroy();
});

test('a followed log and an exec session outlive the request timeout', async (t) => {
  // Long enough for a TLS handshake and an upgrade on a busy machine, short enough to outlive.
  const limits = { headersTimeoutMs: 1000, requestTimeoutMs: 1000, idleTimeoutMs: 1000 };
  const k = await serve(t, limits, 50);
  const logs = await open(k.port);
  t.after(() => logs.socket.destroy());
  logs.socket.write(GET('/containerLogs/default/web/app?follow=true'));
  const ws = new WebSocket(
    `wss://127.0.0.1:${String(k.port)}/exec/default/web/app?command=cat&input=1&output=1`,
    ['v4.channel.k8s.io'],
    { rejectUnauthorized: false, headers: { authorization: 'Bearer alice' } },
  );
  t.after(() => ws.terminate());
  let echoed = '';
  ws.on('message', (data: Buffer) => {
    if (data[0] === 1) echoed += data.subarray(1).toString();
  });
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const start = Date.now();
  // Three request timeouts later both are still open, and the log still flows.
  await waitFor(() => Date.now() - start > 3_000 && logs.lastDataAtMs > start + 2_800, {
    ...WAIT,
    timeoutMs: 10_000,
  });
  assert.equal(logs.closedAtMs, undefined);
  assert.match(logs.text, /^HTTP\/1\.1 200 /);
  ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('still here')]));
  await waitFor(() => echoed === 'still here', WAIT);
  assert.equal(ws.readyState, WebSocket.OPEN);
});
