// fuzz: random traffic at our agent's kubelet port, as the API server reaches it (TLS, the
// apiserver-kubelet-client certificate; some requests with no credentials or a bogus token):
// random HTTP requests, SPDY sessions that abuse the protocol (header bombs, stream floods, a
// peer that never reads), WebSocket sessions with random frames, and slow clients. The agent
// must not crash, must answer every well-formed request with a well-formed response, and its
// RSS and open descriptors must come back to within 10 % of where they started.
import { once } from 'node:events';
import { connect, type TLSSocket } from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import WebSocket from 'ws';
import { podBody, PodTracker } from '../common.js';
import {
  checkResponseHead,
  compressFirstBlock,
  type FuzzTarget,
  randomRequest,
  rawRequest,
  Rng,
  spdyControl,
  spdyHeaderBlock,
  spdySynStream,
  u32,
} from './fuzz-gen.js';
import { apiserverKubeletClient, type Credentials, kubeletRequest } from './kubelet-client.js';
import { createNamespace } from './namespace.js';
import { openFds, rssBytes } from './proc.js';
import type { ChaosContext, ScenarioResult } from './types.js';

const TARGET: FuzzTarget = { namespace: 'chaos-fuzz', pod: 'fuzz', container: 'c' };
/** How much RSS and descriptors may differ from the start, as a fraction. */
const TOLERANCE = 0.1;

interface Tally {
  requests: number;
  /** Well-formed requests that got no answer (closed, or nothing within the timeout). */
  unanswered: number;
  /** Answers that are not well-formed HTTP. */
  malformed: number;
  /** Malformed requests the server closed without an answer (allowed). */
  closedOnGarbage: number;
  codes: Map<number, number>;
  examples: string[];
}

export async function run(ctx: ChaosContext): Promise<ScenarioResult> {
  const count = ctx.short ? 2000 : 10_000;
  const agent = await ctx.startAgent({ providerConfig: { logIntervalMs: 100 } });
  await ctx.waitReady(agent, 90_000);
  await createNamespace(ctx.client, TARGET.namespace, ctx.signal);
  const tracker = new PodTracker(ctx.client, TARGET.namespace);
  await tracker.start();
  await ctx.client.request('POST', `/api/v1/namespaces/${TARGET.namespace}/pods`, {
    body: {
      ...podBody(TARGET.pod, agent.nodeName, 'fuzz'),
      spec: {
        nodeName: agent.nodeName,
        tolerations: [{ operator: 'Exists' }],
        containers: [{ name: TARGET.container, image: 'registry.k8s.io/pause:3.10' }],
      },
    },
  });
  await tracker.until(
    () => tracker.running >= 1,
    60_000,
    ctx.signal,
    () => undefined,
  );
  await tracker.stop();
  const admin = await apiserverKubeletClient(ctx.info.pkiDir);
  const port = agent.port;
  const pid = agent.pid ?? 0;
  const rng = new Rng(ctx.short ? 11 : 1111);
  const tally: Tally = {
    requests: 0,
    unanswered: 0,
    malformed: 0,
    closedOnGarbage: 0,
    codes: new Map(),
    examples: [],
  };
  // Warm up (TLS, pools, JIT) before the baseline is taken.
  await httpPhase(port, admin, new Rng(7), 200, tally);
  await delay(2000, undefined, { signal: ctx.signal });
  const rss0 = rssBytes(pid);
  const fds0 = openFds(pid);
  ctx.log(`baseline: RSS ${mb(rss0)}, ${String(fds0)} descriptors; ${String(count)} requests`);

  await httpPhase(port, admin, rng, count, tally);
  ctx.log(`http: ${String(tally.requests)} requests, codes ${codesLine(tally.codes)}`);
  const spdy = await spdyPhase(port, admin, ctx.short ? 3 : 20, ctx.signal);
  ctx.log(`spdy: ${JSON.stringify(spdy)}`);
  const ws = await wsPhase(port, admin, rng, ctx.short ? 10 : 100, ctx.signal);
  ctx.log(`websocket: ${JSON.stringify(ws)}`);
  const slow = await slowPhase(port, admin, ctx.short ? 8 : 40, ctx.short ? 8_000 : 30_000);
  ctx.log(`slow clients: ${JSON.stringify(slow)}`);

  // Settle: what the sessions held is released within a few seconds; RSS may take a GC.
  let rss1 = rssBytes(pid);
  let fds1 = openFds(pid);
  const within = (a: number | undefined, b: number | undefined): boolean =>
    a !== undefined && b !== undefined && b <= a * (1 + TOLERANCE);
  const settleUntil = performance.now() + 30_000;
  while (performance.now() < settleUntil && !(within(rss0, rss1) && within(fds0, fds1))) {
    await delay(1000, undefined, { signal: ctx.signal });
    rss1 = rssBytes(pid);
    fds1 = openFds(pid);
  }
  const health = await kubeletRequest(port, '/healthz', admin).catch(() => ({ status: 0 }));
  const alive = agent.exited() === undefined;
  const reasons = [
    ...(alive ? [] : [`the agent ${agent.exited() ?? ''}`]),
    ...(health.status === 200 ? [] : [`/healthz answered ${String(health.status)} afterwards`]),
    ...(tally.malformed > 0 ? [`${String(tally.malformed)} malformed answers`] : []),
    ...(tally.unanswered > 0
      ? [`${String(tally.unanswered)} well-formed requests without an answer`]
      : []),
    ...tally.examples.slice(0, 5),
    ...(within(rss0, rss1) ? [] : [`RSS ${mb(rss0)} -> ${mb(rss1)}`]),
    ...(within(fds0, fds1) ? [] : [`descriptors ${String(fds0)} -> ${String(fds1)}`]),
    ...(slow.healthyWhileHeld ? [] : ['no answer to /healthz while slow clients were held']),
  ];
  return {
    ok: reasons.length === 0,
    ...(reasons.length > 0 ? { reason: reasons.join('; ') } : {}),
    requests: tally.requests,
    malformedAnswers: tally.malformed,
    unanswered: tally.unanswered,
    closedOnGarbage: tally.closedOnGarbage,
    codes: codesLine(tally.codes),
    spdySessions: spdy.sessions,
    spdyRefused: spdy.refused,
    wsSessions: ws.sessions,
    slowClients: slow.clients,
    rssStartBytes: rss0 ?? 'n/a',
    rssEndBytes: rss1 ?? 'n/a',
    fdsStart: fds0 ?? 'n/a',
    fdsEnd: fds1 ?? 'n/a',
    crashes: alive ? 0 : 1,
  };
}

const mb = (b: number | undefined): string =>
  b === undefined ? '-' : `${(b / 1024 / 1024).toFixed(1)} MiB`;

const codesLine = (codes: ReadonlyMap<number, number>): string =>
  [...codes]
    .sort((a, b) => a[0] - b[0])
    .map(([c, n]) => `${String(c)}:${String(n)}`)
    .join(',');

/** A TLS connection to the agent with `creds` (the server's certificate is verified). */
async function tlsConnect(port: number, creds: Credentials): Promise<TLSSocket> {
  const socket = connect({
    host: '127.0.0.1',
    port,
    ca: creds.ca,
    ...(creds.cert && creds.key ? { cert: creds.cert, key: creds.key } : {}),
  });
  await once(socket, 'secureConnect');
  return socket;
}

/** Sends raw bytes on a fresh connection and reads the answer's head (the rest is dropped). */
async function exchange(
  port: number,
  creds: Credentials,
  bytes: Buffer,
  timeoutMs: number,
): Promise<{ head: Buffer; closed: boolean; timedOut: boolean }> {
  const socket = await tlsConnect(port, creds);
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    let done = false;
    const finish = (closed: boolean, timedOut: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ head: data, closed, timedOut });
    };
    const timer = setTimeout(() => finish(false, true), timeoutMs);
    socket.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (data.includes('\r\n\r\n') || data.length > 256 * 1024) finish(false, false);
    });
    socket.on('error', () => finish(true, false));
    socket.on('close', () => finish(true, false));
    socket.write(bytes, () => undefined);
  });
}

async function httpPhase(
  port: number,
  admin: Credentials,
  rng: Rng,
  count: number,
  tally: Tally,
): Promise<void> {
  const anonymous: Credentials = { ca: admin.ca };
  let next = 0;
  const lanes = Array.from({ length: 8 }, async () => {
    while (next < count) {
      next++;
      const req = randomRequest(rng, TARGET);
      const creds = rng.chance(0.85) ? admin : anonymous;
      let res: { head: Buffer; closed: boolean; timedOut: boolean };
      try {
        res = await exchange(port, creds, rawRequest(req), 10_000);
      } catch (err) {
        tally.requests++;
        tally.unanswered++;
        note(tally, `connect failed: ${err instanceof Error ? err.message : String(err)}`);
        continue;
      }
      tally.requests++;
      const check = checkResponseHead(res.head);
      if (check.ok === true) {
        tally.codes.set(check.code, (tally.codes.get(check.code) ?? 0) + 1);
        continue;
      }
      if (check.ok === false) {
        tally.malformed++;
        note(tally, `${req.method} ${req.target.slice(0, 60)}: ${check.why}`);
        continue;
      }
      // No complete head: allowed only for a request that was not HTTP.
      if (req.valid) {
        tally.unanswered++;
        note(
          tally,
          `${req.method} ${req.target.slice(0, 60)}: ${res.timedOut ? 'no answer in 10 s' : 'closed without an answer'}`,
        );
      } else tally.closedOnGarbage++;
    }
  });
  await Promise.all(lanes);
}

function note(tally: Tally, line: string): void {
  if (tally.examples.length < 20) tally.examples.push(line);
}

/** The SPDY upgrade of an exec; resolves to the socket after a 101 (or the code it got). */
async function spdyUpgrade(
  port: number,
  creds: Credentials,
  command: string,
): Promise<{ socket: TLSSocket; code: number }> {
  const socket = await tlsConnect(port, creds);
  const path = `/exec/${TARGET.namespace}/${TARGET.pod}/${TARGET.container}?command=${command}&input=1&output=1`;
  socket.write(
    [
      `POST ${path} HTTP/1.1`,
      'Host: 127.0.0.1',
      'Connection: Upgrade',
      'Upgrade: SPDY/3.1',
      'X-Stream-Protocol-Version: v4.channel.k8s.io',
      'Content-Length: 0',
      '',
      '',
    ].join('\r\n'),
  );
  let data = Buffer.alloc(0);
  while (!data.includes('\r\n\r\n')) {
    const [chunk] = (await Promise.race([
      once(socket, 'data'),
      once(socket, 'close').then(() => [undefined]),
    ])) as [Buffer | undefined];
    if (!chunk) break;
    data = Buffer.concat([data, chunk]);
  }
  const check = checkResponseHead(data);
  return { socket, code: check.ok === true ? check.code : 0 };
}

/** Abuses SPDY sessions `rounds` times each way; the agent must survive them all. */
async function spdyPhase(
  port: number,
  admin: Credentials,
  rounds: number,
  signal: AbortSignal,
): Promise<{ sessions: number; refused: number; badUpgrades: number }> {
  let sessions = 0;
  let refused = 0;
  let badUpgrades = 0;
  const headers = (type: string): Buffer =>
    compressFirstBlock(spdyHeaderBlock([['streamtype', type]]));
  const abuses: ((s: TLSSocket) => Promise<void>)[] = [
    // A header bomb: a block of ~64 MiB that compresses to some 64 KiB.
    async (s) => {
      const bomb = compressFirstBlock(spdyHeaderBlock([['x-bomb', 'a'.repeat(64 * 1024 * 1024)]]));
      s.write(spdySynStream(1, bomb));
      await delay(500, undefined, { signal });
    },
    // A block that declares four billion pairs.
    async (s) => {
      s.write(spdySynStream(1, compressFirstBlock(spdyHeaderBlock([], 0xffffffff))));
      await delay(300, undefined, { signal });
    },
    // A stream flood: 5 000 SYN_STREAMs in one write (each its own header block, one zlib stream
    // would be needed for more than the first: the rest are garbage to the server, as intended).
    async (s) => {
      const frames: Buffer[] = [spdySynStream(1, headers('error'))];
      for (let id = 3; id < 10_000; id += 2) frames.push(spdySynStream(id, Buffer.alloc(0)));
      s.write(Buffer.concat(frames));
      await delay(500, undefined, { signal });
    },
    // A peer that never reads: `yes` on stdout, the socket paused for two seconds.
    async (s) => {
      s.write(spdySynStream(1, headers('stdout')));
      s.pause();
      await delay(2000, undefined, { signal });
    },
    // PING flood and garbage control frames.
    async (s) => {
      const frames: Buffer[] = [];
      for (let i = 1; i < 20_000; i += 2) frames.push(spdyControl(6, 0, u32(i)));
      frames.push(spdyControl(0x7fff, 0xff, Buffer.alloc(64)));
      s.write(Buffer.concat(frames));
      await delay(300, undefined, { signal });
    },
  ];
  for (let r = 0; r < rounds; r++) {
    for (const abuse of abuses) {
      const { socket, code } = await spdyUpgrade(port, admin, r % 2 ? 'yes' : 'cat');
      socket.on('error', () => undefined);
      if (code === 101) {
        sessions++;
        await abuse(socket).catch(() => undefined);
      } else if (code >= 400) refused++;
      else badUpgrades++;
      socket.destroy();
    }
  }
  return { sessions, refused, badUpgrades };
}

/** WebSocket exec sessions with random frames, and one that never reads. */
async function wsPhase(
  port: number,
  admin: Credentials,
  rng: Rng,
  rounds: number,
  signal: AbortSignal,
): Promise<{ sessions: number; refused: number }> {
  let sessions = 0;
  let refused = 0;
  for (let r = 0; r < rounds; r++) {
    const command = r % 3 === 0 ? 'yes' : 'cat';
    const url = `wss://127.0.0.1:${String(port)}/exec/${TARGET.namespace}/${TARGET.pod}/${TARGET.container}?command=${command}&stdin=1&stdout=1&stderr=1`;
    const ws = new WebSocket(url, ['v5.channel.k8s.io', 'v4.channel.k8s.io'], {
      ca: admin.ca,
      ...(admin.cert && admin.key ? { cert: admin.cert, key: admin.key } : {}),
      handshakeTimeout: 10_000,
    });
    ws.on('error', () => undefined);
    const opened = await Promise.race([
      once(ws, 'open').then(() => true),
      once(ws, 'close').then(() => false),
      once(ws, 'unexpected-response').then(() => false),
      delay(10_000, false, { signal }),
    ]).catch(() => false);
    if (!opened) {
      refused++;
      ws.terminate();
      continue;
    }
    sessions++;
    if (command === 'yes') {
      // Never reads: the agent must bound what it buffers for us.
      (ws as unknown as { _socket?: { pause(): void } })._socket?.pause();
      await delay(1500, undefined, { signal });
    } else {
      for (let i = 0; i < 30; i++) {
        const kind = rng.int(5);
        if (kind === 0)
          ws.send(Buffer.concat([Buffer.from([rng.int(256)]), rng.bytes(rng.int(4096))]));
        else if (kind === 1) ws.send(rng.bytes(rng.int(64)).toString('latin1'));
        else if (kind === 2) ws.send(Buffer.alloc(0));
        else if (kind === 3) ws.ping(rng.bytes(rng.int(125)));
        else
          ws.send(
            Buffer.concat([Buffer.from([0]), rng.bytes(rng.chance(0.1) ? 1024 * 1024 : 100)]),
          );
      }
      await delay(50, undefined, { signal });
    }
    if (rng.chance(0.5)) ws.close(rng.pick([1000, 1001, 4000, 4999]));
    ws.terminate();
  }
  return { sessions, refused };
}

/**
 * Slow clients, held for `holdMs`: half send a request a byte at a time, a quarter send nothing
 * after the TLS handshake, a quarter never finish it (plain TCP). Meanwhile the agent must still
 * answer /healthz.
 */
async function slowPhase(
  port: number,
  admin: Credentials,
  clients: number,
  holdMs: number,
): Promise<{ clients: number; healthyWhileHeld: boolean }> {
  const { connect: tcpConnect } = await import('node:net');
  const sockets: { destroy(): void }[] = [];
  const timers: NodeJS.Timeout[] = [];
  for (let i = 0; i < clients; i++) {
    if (i % 4 === 3) {
      const s = tcpConnect(port, '127.0.0.1');
      s.on('error', () => undefined);
      sockets.push(s);
      continue;
    }
    const s = await tlsConnect(port, admin).catch(() => undefined);
    if (!s) continue;
    s.on('error', () => undefined);
    sockets.push(s);
    if (i % 4 === 2) continue;
    const bytes = Buffer.from(
      `GET /pods HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ${'s'.repeat(200)}\r\n\r\n`,
    );
    let at = 0;
    const timer = setInterval(() => {
      if (at < bytes.length && !s.destroyed) s.write(bytes.subarray(at, ++at));
    }, 100);
    timers.push(timer);
  }
  await delay(holdMs / 2);
  const health = await kubeletRequest(port, '/healthz', admin, { timeoutMs: 5000 }).catch(() => ({
    status: 0,
  }));
  await delay(holdMs / 2);
  for (const t of timers) clearInterval(t);
  for (const s of sockets) s.destroy();
  return { clients: sockets.length, healthyWhileHeld: health.status === 200 };
}
