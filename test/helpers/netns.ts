import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import { rmSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, connect, type Server } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { spawnOwned } from '../../src/devcluster/process.js';
import { testCluster } from './cluster.js';
import { onOrphaned } from './orphan-watchdog.js';
import { waitFor } from './wait.js';

/** A test host: a network namespace of this run with one address, reachable from here. */
export interface TestHost {
  readonly name: string;
  /** The host's address inside the namespace (global unicast, unlike 127.0.0.1). */
  readonly ip: string;
}

/**
 * Creates a network namespace joined to this one by a veth pair, for what needs a node address
 * that is not loopback (the API server proxies to nodes only at global unicast addresses).
 * Removed when the test ends, or when the test process is orphaned.
 */
export function testHost(t: TestContext): TestHost {
  const tag = randomBytes(3).toString('hex');
  const name = `vk-${tag}`;
  const a = randomInt(0, 256);
  const b = randomInt(0, 64) * 4;
  const [root, inside] = [
    `10.213.${String(a)}.${String(b + 1)}`,
    `10.213.${String(a)}.${String(b + 2)}`,
  ];
  const outer = `vkh${tag}`;
  const peer = `vkp${tag}`;
  const ip = (...args: string[]): void => {
    execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const remove = (): void => {
    spawnSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', outer], { stdio: 'ignore' });
  };
  try {
    ip('netns', 'add', name);
    ip('link', 'add', outer, 'type', 'veth', 'peer', 'name', peer);
    ip('link', 'set', peer, 'netns', name);
    ip('addr', 'add', `${root}/30`, 'dev', outer);
    ip('link', 'set', outer, 'up');
    ip('netns', 'exec', name, 'ip', 'addr', 'add', `${inside}/30`, 'dev', peer);
    ip('netns', 'exec', name, 'ip', 'link', 'set', peer, 'up');
    ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
  } catch (err) {
    remove();
    throw new Error(
      `cannot create a network namespace test host (root and iproute2 are needed): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const forget = onOrphaned(remove);
  t.after(() => {
    forget();
    remove();
  });
  return { name, ip: inside };
}

/**
 * Makes `host.ip:port` reach `127.0.0.1:targetPort` here: a relay in the namespace passes each
 * connection through a Unix socket to a relay in this process, so no traffic leaves the
 * namespace's address, the socket file and loopback.
 */
export async function relayFromHost(
  t: TestContext,
  host: TestHost,
  port: number,
  targetPort: number,
): Promise<void> {
  const socketPath = join(testCluster().dir, `relay-${host.name}-${String(port)}.sock`);
  const local: Server = createServer((client) => {
    const upstream = connect(targetPort, '127.0.0.1');
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve) => local.listen(socketPath, resolve));
  const script = `
    const net = require('node:net');
    net.createServer((c) => {
      const u = net.connect(${JSON.stringify(socketPath)});
      c.pipe(u).pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
    }).listen(${String(port)}, ${JSON.stringify(host.ip)}, () => console.log('ready'));
  `;
  const logPath = join(testCluster().dir, `relay-${host.name}.log`);
  const relay = spawnOwned('ip', {
    args: ['netns', 'exec', host.name, process.execPath, '-e', script],
    logPath,
  });
  const kill = (): void => {
    relay.kill('SIGKILL');
  };
  const forget = onOrphaned(kill);
  t.after(async () => {
    forget();
    kill();
    await new Promise<void>((resolve) => local.close(() => resolve()));
    rmSync(socketPath, { force: true });
  });
  await waitFor(async () => (await readFile(logPath, 'utf8').catch(() => '')).includes('ready'), {
    what: 'the relay in the test host',
  });
}
