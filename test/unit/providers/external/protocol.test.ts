import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex, PassThrough, Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { errorCode, notFound, type ErrorCode } from '../../../../src/errors.js';
import {
  codeOfStatus,
  ExternalProvider,
  ProviderServer,
  startExternalProvider,
  statusOfCode,
} from '../../../../src/providers/external/index.js';
import {
  createCertificateAuthority,
  issueCertificate,
  privateKeyToPem,
  writeCertifiedKeyPair,
} from '../../../../src/pki/index.js';
import { MockProvider } from '../../../../src/providers/mock/index.js';
import { providerContractSuite } from '../../../../src/testing/index.js';
import { waitFor } from '../../../helpers/wait.js';

const dir = mkdtempSync(join(tmpdir(), 'vk-protocol-test-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});
let sockets = 0;

interface Served {
  readonly mock: MockProvider;
  readonly server: ProviderServer;
  readonly client: ExternalProvider;
  readonly address: string;
  close(): Promise<void>;
}

/** A MockProvider served over a unix socket, and a client connected to it. */
async function served(notify = true, versions?: readonly string[]): Promise<Served> {
  const mock = new MockProvider({ nodeName: 'node-1', notify, config: { logIntervalMs: 0 } });
  const server = new ProviderServer({ provider: mock, name: 'mock' });
  const address = `unix://${join(dir, `p${String(++sockets)}.sock`)}`;
  await server.listen(address);
  const client = await ExternalProvider.connect(
    { nodeName: 'node-1', address, ...(versions ? { versions } : {}) },
    AbortSignal.timeout(10_000),
  );
  return {
    mock,
    server,
    client,
    address,
    close: async () => {
      await client.close(AbortSignal.timeout(5000));
      server.close();
      await mock.close();
    },
  };
}

for (const notify of [true, false]) {
  providerContractSuite(
    `mock provider over the protocol (${notify ? 'push' : 'polled'})`,
    async () => {
      const s = await served(notify);
      return { provider: s.client, close: () => s.close() };
    },
  );
}

const signal = new AbortController().signal;
const pod = (name: string) => ({
  metadata: { namespace: 'ns', name, uid: `uid-${name}` },
  spec: {
    containers: [{ name: 'main', image: 'busybox', env: [{ name: 'GREETING', value: 'hi' }] }],
  },
});

async function collect(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks).toString('utf8');
}

describe('the provider protocol', () => {
  test('the handshake names the provider and its capabilities', async () => {
    const s = await served();
    try {
      assert.equal(s.client.providerName, 'mock');
      for (const c of [
        'podNotifier',
        'nodeProvider',
        'logs',
        'exec',
        'attach',
        'portForward',
        'stats',
        'metricsResource',
        'podAddresses',
      ])
        assert.ok(s.client.capabilities.includes(c as never), c);
      assert.equal(typeof s.client.runInContainer, 'function');
      assert.equal(s.client.setPodVolumes, undefined, 'the mock has no volumes capability');
    } finally {
      await s.close();
    }
  });

  test('the protocol carries neither Services nor image pull credentials: the handshake leaves them out', async () => {
    const mock = Object.assign(new MockProvider({ nodeName: 'node-1' }), {
      setServices: () => Promise.resolve(),
      setPodPullCredentials: () => Promise.resolve(),
    });
    const server = new ProviderServer({ provider: mock });
    assert.ok(server.capabilities.includes('podNotifier'));
    for (const c of ['services', 'pullCredentials', 'close'] as const)
      assert.ok(!server.capabilities.includes(c), c);
    await mock.close();
  });

  test('a provider speaking another version gets one clear error', async () => {
    const mock = new MockProvider({ nodeName: 'node-1' });
    const server = new ProviderServer({ provider: mock });
    const address = `unix://${join(dir, `p${String(++sockets)}.sock`)}`;
    await server.listen(address);
    try {
      await assert.rejects(
        ExternalProvider.connect(
          { nodeName: 'n', address, versions: ['v9'] },
          AbortSignal.timeout(10_000),
        ),
        (err: unknown) => {
          assert.equal(errorCode(err), 'Permanent');
          assert.match((err as Error).message, /v9.*v1alpha1|v1alpha1.*v9/);
          assert.doesNotMatch((err as Error).message, /\n/);
          return true;
        },
      );
    } finally {
      server.close();
      await mock.close();
    }
  });

  test('error codes cross the boundary both ways', async () => {
    const codes: ErrorCode[] = [
      'NotFound',
      'AlreadyExists',
      'Conflict',
      'InvalidInput',
      'Permanent',
      'NotImplemented',
      'Unavailable',
      'Internal',
    ];
    for (const code of codes) assert.equal(codeOfStatus(statusOfCode(code)), code, code);
    assert.equal(codeOfStatus(grpc.status.DEADLINE_EXCEEDED), 'Unavailable');
    assert.equal(codeOfStatus(grpc.status.UNKNOWN), 'Internal');
    const s = await served();
    try {
      await assert.rejects(
        s.client.updatePod(pod('nope'), signal),
        (err) => errorCode(err) === 'NotFound',
      );
      await assert.rejects(
        s.client.createPod({ metadata: {} }, signal),
        (err) => errorCode(err) === 'InvalidInput',
      );
      await assert.rejects(
        s.client.getContainerLogs?.(
          'ns',
          'nope',
          'main',
          { follow: false, previous: false, timestamps: false },
          signal,
        ) ?? Promise.reject(notFound('x')),
        (err) => errorCode(err) === 'NotFound',
      );
    } finally {
      await s.close();
    }
  });

  test('logs with options, exec with stdin and exit codes, attach, port-forward, stats', async () => {
    const s = await served();
    try {
      await s.client.createPod(pod('web'), signal);
      s.mock.writeLog('ns', 'web', 'main', 'one\ntwo\nthree\n');
      const tail = await s.client.getContainerLogs?.(
        'ns',
        'web',
        'main',
        { follow: false, previous: false, timestamps: false, tailLines: 2 },
        signal,
      );
      assert.ok(tail);
      assert.equal(await collect(tail), 'two\nthree\n');

      const stdout = new PassThrough();
      const out = collect(stdout);
      const code = await s.client.runInContainer?.(
        'ns',
        'web',
        'main',
        ['cat'],
        { tty: false, stdin: Readable.from([Buffer.from('echoed')]), stdout },
        signal,
      );
      assert.equal(code, 0);
      stdout.end();
      assert.equal(await out, 'echoed');
      const fail = await s.client.runInContainer?.(
        'ns',
        'web',
        'main',
        ['sh', '-c', 'exit 3'],
        { tty: false },
        signal,
      );
      assert.equal(fail, 3);
      const env = new PassThrough();
      const envText = collect(env);
      await s.client.runInContainer?.(
        'ns',
        'web',
        'main',
        ['printenv', 'GREETING'],
        { tty: false, stdout: env },
        signal,
      );
      env.end();
      assert.equal(await envText, 'hi\n');

      const attachOut = new PassThrough();
      const attached = collect(attachOut);
      await s.client.attachToContainer?.(
        'ns',
        'web',
        'main',
        { tty: false, stdin: Readable.from([Buffer.from('to the log\n')]), stdout: attachOut },
        signal,
      );
      attachOut.end();
      assert.match(await attached, /to the log/);

      const [local, remote] = duplexPair();
      const forwarded = s.client.portForward?.('ns', 'web', 8080, remote, signal);
      const echoed = collect(local);
      local.end(Buffer.from('ping over the protocol'));
      await forwarded;
      assert.equal(await echoed, 'ping over the protocol');

      const summary = await s.client.getStatsSummary?.(signal);
      assert.equal(summary?.pods[0]?.podRef.name, 'web');
      assert.match(
        (await s.client.getMetricsResource?.(signal)) ?? '',
        /container_cpu_usage_seconds_total/,
      );
      assert.deepEqual(
        await s.client.preparePod?.(pod('web'), signal),
        await s.mock.preparePod(pod('web'), signal),
      );
    } finally {
      await s.close();
    }
  });

  test('a restarted provider: ping fails while it is down, the watch resyncs after', async () => {
    const s = await served();
    const pushed: string[] = [];
    s.client.notifyPods?.((p) => pushed.push(p.metadata?.name ?? ''));
    try {
      await s.client.createPod(pod('before'), signal);
      await waitFor(() => pushed.includes('before'), { what: 'the first push' });
      s.server.close();
      await assert.rejects(s.client.ping(AbortSignal.timeout(2000)));
      await assert.rejects(s.client.getPods(signal), (err) => errorCode(err) === 'Unavailable');
      // The same backend behind a new server at the same address, with a pod created meanwhile.
      await s.mock.createPod(pod('meanwhile'), signal);
      const again = new ProviderServer({ provider: s.mock });
      await again.listen(s.address);
      await waitFor(
        async () =>
          s.client.ping(AbortSignal.timeout(2000)).then(
            () => true,
            () => false,
          ),
        { what: 'ping to succeed again', timeoutMs: 15_000 },
      );
      await waitFor(() => pushed.includes('meanwhile'), {
        what: 'the resync after the reconnect',
        timeoutMs: 15_000,
      });
      again.close();
    } finally {
      await s.close();
    }
  });
});

/** Two connected duplex streams, like a socket pair. */
function duplexPair(): [Duplex, Duplex] {
  const aToB = new PassThrough();
  const bToA = new PassThrough();

  return [
    Duplex.from({ writable: aToB, readable: bToA }),
    Duplex.from({ writable: bToA, readable: aToB }),
  ];
}

test('TCP with mutual TLS: a client with the CA-signed certificate connects, one without is refused', async () => {
  const tlsDir = mkdtempSync(join(tmpdir(), 'vk-protocol-tls-'));
  const mock = new MockProvider({ nodeName: 'node-1' });
  const server = new ProviderServer({ provider: mock });
  try {
    const ca = await createCertificateAuthority({ subject: { commonName: 'provider-ca' } });
    const serving = await issueCertificate(ca, {
      subject: { commonName: 'provider' },
      altNames: { ipAddresses: ['127.0.0.1'] },
      extendedKeyUsages: ['serverAuth'],
    });
    const client = await issueCertificate(ca, {
      subject: { commonName: 'agent' },
      extendedKeyUsages: ['clientAuth'],
    });
    const files = {
      ca: join(tlsDir, 'ca.crt'),
      cert: join(tlsDir, 'agent.crt'),
      key: join(tlsDir, 'agent.key'),
    };
    writeFileSync(files.ca, ca.certificate);
    await writeCertifiedKeyPair(client, { certFile: files.cert, keyFile: files.key });
    const port = await server.listen(
      '127.0.0.1:0',
      grpc.ServerCredentials.createSsl(
        Buffer.from(ca.certificate),
        [
          {
            cert_chain: Buffer.from(serving.certificate),
            private_key: Buffer.from(await privateKeyToPem(serving.keys)),
          },
        ],
        true,
      ),
    );
    const address = `127.0.0.1:${String(port)}`;
    const provider = await startExternalProvider({
      nodeName: 'node-1',
      config: { address, tls: files, connectTimeoutMs: 10_000 },
    });
    await provider.createPod(pod('over-tls'), signal);
    assert.equal((await provider.getPod('ns', 'over-tls', signal))?.metadata?.name, 'over-tls');
    await provider.close(signal);
    // Without a client certificate the provider refuses the connection.
    await assert.rejects(
      ExternalProvider.connect(
        {
          nodeName: 'node-1',
          address,
          credentials: grpc.credentials.createSsl(Buffer.from(ca.certificate)),
        },
        AbortSignal.timeout(2000),
      ),
    );
  } finally {
    server.close();
    await mock.close();
    rmSync(tlsDir, { recursive: true, force: true });
  }
});
