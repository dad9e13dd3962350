// Requests to our agent's kubelet port as the API server makes them: TLS verified against the
// cluster CA, with a client certificate, a bearer token, or nothing.
import { readFile } from 'node:fs/promises';
import { request } from 'node:https';
import { join } from 'node:path';
import { PKI } from '../../src/devcluster/pki.js';

/** Who a request claims to be. */
export interface Credentials {
  readonly ca: Buffer;
  readonly cert?: Buffer;
  readonly key?: Buffer;
  readonly token?: string;
}

export interface KubeletResponse {
  readonly status: number;
  readonly body: string;
}

/** The API server's own kubelet client certificate (`system:masters`) from the cluster PKI. */
export async function apiserverKubeletClient(pkiDir: string): Promise<Credentials> {
  const [ca, cert, key] = await Promise.all([
    readFile(join(pkiDir, `${PKI.ca}.crt`)),
    readFile(join(pkiDir, `${PKI.apiserverKubeletClient}.crt`)),
    readFile(join(pkiDir, `${PKI.apiserverKubeletClient}.key`)),
  ]);
  return { ca, cert, key };
}

/** One request to `https://127.0.0.1:<port><path>`; the body is read whole (capped). */
export function kubeletRequest(
  port: number,
  path: string,
  creds: Credentials,
  options: {
    readonly method?: string;
    readonly headers?: Readonly<Record<string, string>>;
    readonly timeoutMs?: number;
    readonly maxBodyBytes?: number;
  } = {},
): Promise<KubeletResponse> {
  const max = options.maxBodyBytes ?? 4 * 1024 * 1024;
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'GET',
        ca: creds.ca,
        ...(creds.cert && creds.key ? { cert: creds.cert, key: creds.key } : {}),
        headers: {
          ...(creds.token ? { authorization: `Bearer ${creds.token}` } : {}),
          ...options.headers,
        },
        agent: false,
        timeout: options.timeoutMs ?? 15_000,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          size += d.length;
          if (size <= max) chunks.push(d);
          else res.destroy();
        });
        res.on('close', () => {
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        });
        res.on('error', () => undefined);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer to ${path} within the timeout`)));
    req.on('error', reject);
    req.end();
  });
}

/**
 * The counts of a Prometheus histogram or counter by one label, summed over the others:
 * `sumByLabel(text, 'x_count', 'method')` gives `{createPod: 12, ...}`.
 */
export function sumByLabel(text: string, metric: string, label: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${metric}{`) && !line.startsWith(`${metric} `)) continue;
    const close = line.lastIndexOf('}');
    const labels = close > 0 ? line.slice(line.indexOf('{') + 1, close) : '';
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    if (!Number.isFinite(value)) continue;
    const m = new RegExp(`(?:^|,)${label}="([^"]*)"`).exec(labels);
    const key = m?.[1] ?? '';
    out.set(key, (out.get(key) ?? 0) + value);
  }
  return out;
}
