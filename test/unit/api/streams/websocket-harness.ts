/**
 * A real HTTP server on port 0 whose 'upgrade' event calls the code under test, and a real `ws`
 * client that records every message by channel.
 */
import { randomBytes } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket } from 'ws';

export type UpgradeHandler = (req: IncomingMessage, socket: Duplex, head: Buffer) => void;

export interface TestServer {
  readonly url: string;
  close(): Promise<void>;
}

export async function startServer(onUpgrade: UpgradeHandler): Promise<TestServer> {
  const server: Server = createServer((_req, res) => {
    res.writeHead(404).end();
  });
  server.on('upgrade', onUpgrade);
  // Upgraded sockets are no longer the HTTP server's to close, but they still keep it open.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${String(port)}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => {
          resolve();
        });
      }),
  };
}

export interface ChannelMessage {
  readonly channel: number;
  readonly payload: Buffer;
  /** Whether it came as a binary (rather than text) message. */
  readonly binary: boolean;
}

/** A connected client. Messages are decoded with the framing of the negotiated protocol. */
export interface TestClient {
  readonly ws: WebSocket;
  readonly messages: ChannelMessage[];
  /** Set once the connection closed. */
  closed: { code: number; reason: string } | undefined;
  /** All payload bytes received on `channel`, concatenated. */
  received(channel: number): Buffer;
  /** Sends `payload` on `channel` in the negotiated framing. */
  send(channel: number, payload: Buffer | string): void;
}

export async function connect(url: string, protocols?: string[]): Promise<TestClient> {
  const ws = new WebSocket(url, protocols);
  const messages: ChannelMessage[] = [];
  const base64 = () => ws.protocol.includes('base64');
  const client: TestClient = {
    ws,
    messages,
    closed: undefined,
    received: (channel) =>
      Buffer.concat(messages.filter((m) => m.channel === channel).map((m) => m.payload)),
    send: (channel, payload) => {
      const bytes = typeof payload === 'string' ? Buffer.from(payload) : payload;
      if (base64()) {
        ws.send(String.fromCharCode(48 + channel) + bytes.toString('base64'));
      } else {
        ws.send(Buffer.concat([Buffer.from([channel]), bytes]));
      }
    },
  };
  ws.on('message', (data: Buffer, isBinary) => {
    if (base64()) {
      const text = data.toString('latin1');
      messages.push({
        channel: text.charCodeAt(0) - 48,
        payload: Buffer.from(text.slice(1), 'base64'),
        binary: isBinary,
      });
    } else {
      messages.push({ channel: data.readUInt8(0), payload: data.subarray(1), binary: isBinary });
    }
  });
  ws.on('close', (code, reason) => {
    client.closed = { code, reason: reason.toString() };
  });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return client;
}

/** The error a client gets when the server refuses the upgrade (`Unexpected server response: N`). */
export async function connectError(url: string, protocols?: string[]): Promise<Error> {
  const ws = new WebSocket(url, protocols);
  return new Promise<Error>((resolve, reject) => {
    ws.once('open', () => {
      ws.terminate();
      reject(new Error('the upgrade succeeded'));
    });
    ws.once('error', resolve);
  });
}

/** Sends an upgrade request that is not a WebSocket one; resolves to the response status and body. */
export async function nonWebSocketUpgrade(
  url: string,
): Promise<{ status: number | undefined; body: string }> {
  const target = new URL(url.replace(/^ws:/, 'http:'));
  return new Promise((resolve, reject) => {
    const req = request(target, {
      method: 'POST',
      headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1' },
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() });
      });
    });
    req.on('upgrade', () => {
      reject(new Error('unexpected upgrade'));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A hand-made WebSocket upgrade request with a raw `Sec-WebSocket-Protocol` header (the ws client
 * refuses to send some values). Resolves to the response status and the chosen subprotocol.
 */
export async function rawUpgrade(
  url: string,
  protocolHeader: string,
): Promise<{ status: number | undefined; protocol: string | undefined }> {
  const target = new URL(url.replace(/^ws:/, 'http:'));
  return new Promise((resolve, reject) => {
    const req = request(target, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': protocolHeader,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      const protocol = res.headers['sec-websocket-protocol'];
      resolve({ status: res.statusCode, protocol });
    });
    req.on('response', (res) => {
      res.resume();
      resolve({ status: res.statusCode, protocol: undefined });
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * A WebSocket upgrade request the server is expected to refuse; resolves to the response status
 * and body (the ws client reports only the status).
 */
export async function refusedUpgrade(
  url: string,
  protocolHeader: string,
): Promise<{ status: number | undefined; body: string }> {
  const target = new URL(url.replace(/^ws:/, 'http:'));
  return new Promise((resolve, reject) => {
    const req = request(target, {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
        'Sec-WebSocket-Protocol': protocolHeader,
      },
    });
    req.on('upgrade', (_res, socket) => {
      socket.destroy();
      reject(new Error('the upgrade succeeded'));
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() });
      });
    });
    req.on('error', reject);
    req.end();
  });
}
