import { BlockList, isIP } from 'node:net';
import { request } from 'node:https';
import type { CertificateRequestInfo } from '../pki/index.js';
import { readCertificateRequest } from '../pki/index.js';

/** The signer whose requests the approver looks at. */
export const KUBELET_SERVING_SIGNER = 'kubernetes.io/kubelet-serving';

/** The parts of a CertificateSigningRequest the approver reads. */
export interface ServingCsr {
  readonly metadata?: { readonly name?: string; readonly resourceVersion?: string };
  readonly spec?: {
    readonly request?: string;
    readonly signerName?: string;
    readonly username?: string;
    readonly groups?: readonly string[];
    readonly usages?: readonly string[];
  };
  readonly status?: {
    readonly certificate?: string;
    readonly conditions?: readonly {
      readonly type?: string;
      readonly status?: string;
      readonly reason?: string;
      readonly message?: string;
    }[];
  };
}

/** The parts of a Node the approver reads. */
export interface ServingNode {
  readonly metadata?: { readonly name?: string };
  readonly status?: {
    readonly addresses?: readonly { readonly type?: string; readonly address?: string }[];
  };
}

/** Whether to approve a request, and if not, why it stays pending. */
export type ServingCsrDecision =
  { readonly approve: true } | { readonly approve: false; readonly reason: string };

const NODE_PREFIX = 'system:node:';
const ALLOWED_USAGES = new Set(['digital signature', 'key encipherment', 'server auth']);
const DNS_ADDRESS_TYPES = new Set(['Hostname', 'InternalDNS', 'ExternalDNS']);
const IP_ADDRESS_TYPES = new Set(['InternalIP', 'ExternalIP']);

/** Whether a request was approved or denied already, or has its certificate. */
export function isDecided(csr: ServingCsr): boolean {
  if (csr.status?.certificate) return true;
  return (csr.status?.conditions ?? []).some(
    (c) => (c.type === 'Approved' || c.type === 'Denied') && c.status !== 'False',
  );
}

/**
 * The approval rule of a kubelet-serving request, as a kubelet asks for one (`CN=system:node:<n>`,
 * `O=system:nodes`, its node's names and addresses): approved only when the requester is the node
 * `<n>` itself (`spec.username`, the `system:nodes` group), the request's subject says the same,
 * its usages are those of a serving certificate, and every subject alternative name is the node's:
 * DNS names among the node name and its Hostname/InternalDNS/ExternalDNS addresses, IP addresses
 * among its InternalIP/ExternalIP addresses. `node` is the Node named by the requester, undefined
 * when there is none (yet). Pure: no I/O.
 */
export function servingCsrDecision(
  csr: ServingCsr,
  request: CertificateRequestInfo,
  node: ServingNode | undefined,
): ServingCsrDecision {
  const no = (reason: string): ServingCsrDecision => ({ approve: false, reason });
  const spec = csr.spec ?? {};
  if (spec.signerName !== KUBELET_SERVING_SIGNER)
    return no(`signer is not ${KUBELET_SERVING_SIGNER}`);
  const username = spec.username ?? '';
  if (!username.startsWith(NODE_PREFIX) || username.length === NODE_PREFIX.length)
    return no(`requested by ${username || 'nobody'}, not by a node (system:node:<name>)`);
  if (!(spec.groups ?? []).includes('system:nodes'))
    return no('the requester is not in the system:nodes group');
  if (!request.signatureValid) return no('the request is not signed by the key it carries');
  if (request.subject.commonName !== username)
    return no(`the request's common name ${request.subject.commonName} is not ${username}`);
  const orgs = request.subject.organizations ?? [];
  if (orgs.length !== 1 || orgs[0] !== 'system:nodes')
    return no(`the request's organizations [${orgs.join(', ')}] are not [system:nodes]`);
  const usages = spec.usages ?? [];
  if (!usages.includes('server auth') || usages.some((u) => !ALLOWED_USAGES.has(u)))
    return no(`usages [${usages.join(', ')}] are not those of a serving certificate`);
  const { dnsNames, ipAddresses } = request.altNames;
  if (dnsNames.length + ipAddresses.length === 0)
    return no('the request names neither a DNS name nor an IP address');
  const nodeName = username.slice(NODE_PREFIX.length);
  if (!node) return no(`node ${nodeName} does not exist (yet)`);
  const addresses = node.status?.addresses ?? [];
  const names = new Set([
    nodeName,
    ...addresses.filter((a) => DNS_ADDRESS_TYPES.has(a.type ?? '')).map((a) => a.address ?? ''),
  ]);
  const foreignName = dnsNames.find((d) => !names.has(d));
  if (foreignName !== undefined)
    return no(`DNS name ${foreignName} is neither the name nor a DNS address of node ${nodeName}`);
  const ips = new BlockList();
  for (const a of addresses) {
    const family = isIP(a.address ?? '');
    if (IP_ADDRESS_TYPES.has(a.type ?? '') && family !== 0)
      ips.addAddress(a.address ?? '', family === 6 ? 'ipv6' : 'ipv4');
  }
  const foreignIp = ipAddresses.find((ip) => {
    const family = isIP(ip);
    return family === 0 || !ips.check(ip, family === 6 ? 'ipv6' : 'ipv4');
  });
  if (foreignIp !== undefined)
    return no(`IP address ${foreignIp} is not an InternalIP or ExternalIP of node ${nodeName}`);
  return { approve: true };
}

export interface ServingCsrApproverOptions {
  /** The API server, `https://host:port`. */
  readonly server: string;
  /** The cluster CA and a client key pair allowed to approve kubelet-serving requests. */
  readonly tls: { readonly ca: Buffer; readonly cert: Buffer; readonly key: Buffer };
  /**
   * How often pending requests are looked at again while one of them waits for its Node (the
   * Node may appear or change addresses after the request). Default: 1 000 ms.
   */
  readonly pollIntervalMs?: number;
  /** One line per approval, and one per request left pending (once per reason). Default: none. */
  readonly log?: (line: string) => void;
}

/**
 * Approves the kubelet-serving CertificateSigningRequests of nodes whose names and addresses
 * match their Node (see {@link servingCsrDecision}); the controller manager's signer then issues
 * them. Other requests are left pending for a person (`kubectl certificate approve`): nothing is
 * ever denied. Lists the requests of the signer, then waits for a change through a watch (or
 * `pollIntervalMs` while one waits for its Node), and lists again: level-triggered, so a missed
 * event or an API-server restart costs one round.
 */
export class ServingCsrApprover {
  readonly #options: ServingCsrApproverOptions;
  /** `<csr>\0<reason>` already logged, so a pending request is reported once per reason. */
  readonly #reported = new Set<string>();

  constructor(options: ServingCsrApproverOptions) {
    this.#options = options;
  }

  /** Runs until `signal` aborts; API errors are logged and retried a second later. */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.#options;
    const say = o.log ?? (() => undefined);
    const pollMs = o.pollIntervalMs ?? 1_000;
    let lastError = '';
    while (!signal.aborted) {
      try {
        const list = await this.#call<{
          metadata?: { resourceVersion?: string };
          items?: ServingCsr[];
        }>(
          'GET',
          `/apis/certificates.k8s.io/v1/certificatesigningrequests?fieldSelector=${encodeURIComponent(`spec.signerName=${KUBELET_SERVING_SIGNER}`)}`,
          signal,
        );
        let waiting = false;
        for (const csr of list.items ?? []) {
          if (isDecided(csr)) continue;
          if (!(await this.#consider(csr, signal, say))) waiting = true;
        }
        lastError = '';
        await this.#waitForChange(
          list.metadata?.resourceVersion ?? '',
          waiting ? pollMs : 60_000,
          signal,
        );
      } catch (err) {
        if (isAborted(signal)) return;
        const message = (err as Error).message;
        if (message !== lastError) say(`serving CSR approver: ${message}; retrying`);
        lastError = message;
        await pause(1_000, signal);
      }
    }
  }

  /** Approves the request when it qualifies; false when it stays pending. */
  async #consider(
    csr: ServingCsr,
    signal: AbortSignal,
    say: (line: string) => void,
  ): Promise<boolean> {
    const name = csr.metadata?.name ?? '';
    let decision: ServingCsrDecision;
    try {
      const info = await readCertificateRequest(
        Buffer.from(csr.spec?.request ?? '', 'base64').toString('utf8'),
      );
      const username = csr.spec?.username ?? '';
      const node = username.startsWith(NODE_PREFIX)
        ? await this.#call<ServingNode | undefined>(
            'GET',
            `/api/v1/nodes/${encodeURIComponent(username.slice(NODE_PREFIX.length))}`,
            signal,
            undefined,
            true,
          )
        : undefined;
      decision = servingCsrDecision(csr, info, node);
    } catch (err) {
      if (signal.aborted) throw err;
      decision = {
        approve: false,
        reason: `the request does not parse: ${(err as Error).message}`,
      };
    }
    if (!decision.approve) {
      const key = `${name}\0${decision.reason}`;
      if (!this.#reported.has(key))
        say(`kubelet-serving CSR ${name} left pending: ${decision.reason}`);
      this.#reported.add(key);
      return false;
    }
    const approved: ServingCsr = {
      ...csr,
      status: {
        ...csr.status,
        conditions: [
          ...(csr.status?.conditions ?? []),
          {
            type: 'Approved',
            status: 'True',
            reason: 'NodeNamesMatch',
            message:
              "approved by the dev cluster: the requester's node has these names and addresses",
          },
        ],
      },
    };
    await this.#call(
      'PUT',
      `/apis/certificates.k8s.io/v1/certificatesigningrequests/${encodeURIComponent(name)}/approval`,
      signal,
      approved,
    );
    say(`kubelet-serving CSR ${name} of ${csr.spec?.username ?? '?'} approved`);
    return true;
  }

  /** Resolves at the first event after `resourceVersion`, after `maxMs`, or on any watch error. */
  #waitForChange(resourceVersion: string, maxMs: number, signal: AbortSignal): Promise<void> {
    const path =
      `/apis/certificates.k8s.io/v1/certificatesigningrequests?watch=1&allowWatchBookmarks=false` +
      `&fieldSelector=${encodeURIComponent(`spec.signerName=${KUBELET_SERVING_SIGNER}`)}` +
      `&timeoutSeconds=${String(Math.max(1, Math.ceil(maxMs / 1000)))}` +
      (resourceVersion ? `&resourceVersion=${encodeURIComponent(resourceVersion)}` : '');
    return new Promise<void>((resolve) => {
      const o = this.#options;
      const req = request(
        new URL(path, o.server),
        { method: 'GET', ca: o.tls.ca, cert: o.tls.cert, key: o.tls.key, agent: false },
        (res) => {
          res.once('data', () => done());
          res.once('end', () => done());
          res.once('error', () => done());
          res.resume();
        },
      );
      const timer = setTimeout(() => done(), maxMs);
      const onAbort = (): void => done();
      signal.addEventListener('abort', onAbort, { once: true });
      function done(): void {
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        req.destroy();
        resolve();
      }
      req.once('error', () => done());
      req.end();
    });
  }

  #call<T>(
    method: string,
    path: string,
    signal: AbortSignal,
    body?: unknown,
    notFoundIsUndefined = false,
  ): Promise<T> {
    const o = this.#options;
    return new Promise<T>((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request(
        new URL(path, o.server),
        {
          method,
          ca: o.tls.ca,
          cert: o.tls.cert,
          key: o.tls.key,
          agent: false,
          signal,
          timeout: 10_000,
          headers: {
            accept: 'application/json',
            ...(payload === undefined ? {} : { 'content-type': 'application/json' }),
          },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('error', reject);
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            if (status === 404 && notFoundIsUndefined) resolve(undefined as T);
            else if (status >= 200 && status < 300) {
              try {
                resolve(JSON.parse(text) as T);
              } catch {
                reject(new Error(`${method} ${path}: the answer is not JSON`));
              }
            } else
              reject(
                new Error(`${method} ${path}: HTTP ${String(status)} ${text.trim().slice(0, 200)}`),
              );
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: timed out`)));
      req.on('error', reject);
      req.end(payload);
    });
  }
}

/** Read through a call, so a loop condition on `signal.aborted` does not narrow it for good. */
function isAborted(signal: AbortSignal): boolean {
  return signal.aborted;
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
