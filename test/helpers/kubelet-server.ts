import type { V1Pod } from '../../src/wire.js';
import { request } from 'node:https';
import type { TestContext } from 'node:test';
import { connect } from 'node:tls';
import type { Authorizer, RequestAttributes, RequestUser } from '../../src/api/auth.js';
import { selfSignedCertificate } from '../../src/api/certs.js';
import { KubeletServer, type KubeletServerOptions } from '../../src/api/server.js';
import type { Provider } from '../../src/provider.js';

let certificate: Promise<{ cert: string; key: string }> | undefined;

/** One self-signed serving certificate for 127.0.0.1, made once per process. */
export function testCertificate(): Promise<{ cert: string; key: string }> {
  certificate ??= selfSignedCertificate({ nodeName: 'kubelet-test', ips: ['127.0.0.1'] });
  return certificate;
}

/** A decision an {@link ScriptedAuthorizer} saw. */
export interface AuthorizationCall {
  readonly user: string;
  readonly attrs: RequestAttributes;
}

/**
 * Authenticates by bearer token without any API server: `Bearer <name>` is the user `<name>`;
 * `Bearer throw` makes authentication fail. Authorizes everyone but `denied` (403); for
 * `broken` the decision throws (500). Records every decision.
 */
export class ScriptedAuthorizer implements Authorizer {
  readonly calls: AuthorizationCall[] = [];

  authenticate(req: { headers: { authorization?: string } }): Promise<RequestUser | undefined> {
    const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
    if (!match?.[1]) return Promise.resolve(undefined);
    if (match[1] === 'throw') return Promise.reject(new Error('the token review failed'));
    return Promise.resolve({ name: match[1], groups: ['testers'] });
  }

  authorize(user: RequestUser, attrs: RequestAttributes): Promise<boolean> {
    this.calls.push({ user: user.name, attrs });
    if (user.name === 'broken') return Promise.reject(new Error('the review failed'));
    return Promise.resolve(user.name !== 'denied');
  }
}

/** Pods bound to the node, as a test sets them. */
export class TestPods {
  readonly #pods = new Map<string, V1Pod>();
  add(pod: V1Pod): void {
    this.#pods.set(`${pod.metadata?.namespace ?? ''}/${pod.metadata?.name ?? ''}`, pod);
  }
  getPod(namespace: string, name: string): V1Pod | undefined {
    return this.#pods.get(`${namespace}/${name}`);
  }
  listPods(): V1Pod[] {
    return [...this.#pods.values()];
  }
}

export interface Answer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
  readonly body: string;
}

export interface TestKubeletServer {
  readonly server: KubeletServer;
  readonly port: number;
  readonly pods: TestPods;
  /** An HTTPS request; `token` becomes `Authorization: Bearer <token>`. */
  fetch(
    path: string,
    options?: { readonly method?: string; readonly token?: string },
  ): Promise<Answer>;
  /** An upgrade request (SPDY/3.1) that the server refuses: its status and body. */
  refusedUpgrade(path: string, token?: string): Promise<{ status: number; body: string }>;
}

/**
 * A {@link KubeletServer} on 127.0.0.1, port 0, with a self-signed certificate, closed when the
 * test ends. Default authorizer: a {@link ScriptedAuthorizer}.
 */
export async function startKubeletServer(
  t: TestContext,
  options: {
    readonly provider: Provider;
    readonly authorizer?: Authorizer;
  } & Partial<Pick<KubeletServerOptions, 'registry' | 'timeouts' | 'limits'>>,
): Promise<TestKubeletServer> {
  const pods = new TestPods();
  const server = new KubeletServer({
    nodeName: 'kubelet-test',
    pods,
    authorizer: options.authorizer ?? new ScriptedAuthorizer(),
    ...(await testCertificate()),
    port: 0,
    host: '127.0.0.1',
    ...options,
  });
  await server.listen();
  t.after(() => server.close());
  const port = server.port;
  return {
    server,
    port,
    pods,
    fetch: (path, o = {}) =>
      new Promise((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            path,
            method: o.method ?? 'GET',
            rejectUnauthorized: false,
            agent: false,
            headers: o.token ? { authorization: `Bearer ${o.token}` } : {},
          },
          (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, headers: res.headers, body }),
            );
          },
        );
        req.on('error', reject);
        req.end();
      }),
    refusedUpgrade: (path, token) =>
      new Promise((resolve, reject) => {
        const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
          socket.write(
            `POST ${path} HTTP/1.1\r\nHost: kubelet\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n` +
              `X-Stream-Protocol-Version: v4.channel.k8s.io\r\n` +
              (token ? `Authorization: Bearer ${token}\r\n` : '') +
              '\r\n',
          );
        });
        let raw = '';
        socket.setEncoding('utf8');
        socket.on('data', (d: string) => (raw += d));
        socket.on('error', reject);
        socket.on('close', () => {
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1] ?? 0);
          resolve({ status, body: raw.split('\r\n\r\n').slice(1).join('\r\n\r\n') });
        });
      }),
  };
}
