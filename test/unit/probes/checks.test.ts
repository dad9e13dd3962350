import type { V1Container, V1Probe } from '../../../src/wire.js';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { selfSignedCertificate } from '../../../src/api/certs.js';
import { decodeHealthCheckResponse, encodeHealthCheckRequest } from '../../../src/probes/grpc.js';
import {
  runProbe,
  validateProbe,
  validateProbes,
  type ProbeResult,
  type ProbeTarget,
} from '../../../src/probes/index.js';
import { waitFor } from '../../helpers/wait.js';
import {
  HOST,
  alive,
  closedPort,
  execFixture,
  grpcFixture,
  httpFixture,
  tcpFixture,
  type GrpcFixture,
  type HttpFixture,
  type ProbeExec,
} from './fixtures.js';

const never = new AbortController().signal;
const container: V1Container = {
  name: 'main',
  ports: [
    { name: 'http', containerPort: 0 },
    { name: 'grpc', containerPort: 0 },
  ],
};
interface TargetPatch {
  readonly container?: V1Container;
  readonly podIP?: string;
  readonly exec?: ProbeExec;
}
const target = (patch: TargetPatch = {}): ProbeTarget => ({
  container: patch.container ?? container,
  runtime: { podIP: patch.podIP ?? HOST, ...(patch.exec ? { exec: patch.exec } : {}) },
  userAgent: 'kube-probe/1.37',
});
const probe = (p: V1Probe, timeoutMs = 10_000, t = target()): Promise<ProbeResult> =>
  runProbe(p, t, timeoutMs, never);

describe('httpGet', () => {
  let http: HttpFixture;
  let other: HttpFixture;
  before(async () => {
    http = await httpFixture();
    other = await httpFixture();
  });
  after(async () => {
    await http.close();
    await other.close();
  });
  const get = (path: string, extra: Partial<V1Probe['httpGet']> = {}, timeoutMs = 10_000) =>
    probe({ httpGet: { port: http.port, path, ...extra } }, timeoutMs);

  test('2xx is a success with the body as output', async () => {
    assert.deepEqual(await get('/status/200'), { outcome: 'success', output: 'status 200' });
    assert.equal((await get('/status/204')).outcome, 'success');
  });

  test('4xx and 5xx fail with the status code only', async () => {
    assert.deepEqual(await get('/status/500'), {
      outcome: 'failure',
      output: 'HTTP probe failed with statuscode: 500',
    });
    assert.equal((await get('/status/404')).output, 'HTTP probe failed with statuscode: 404');
  });

  test('a redirect to the same host is followed', async () => {
    const ok = await get(`/redirect?to=${encodeURIComponent('/status/200')}`);
    assert.deepEqual(ok, { outcome: 'success', output: 'status 200' });
    const bad = await get(`/redirect?to=${encodeURIComponent('/status/503')}&code=307`);
    assert.equal(bad.output, 'HTTP probe failed with statuscode: 503');
    // Same host name on another port is the same host to the kubelet (Go compares hostnames).
    const before = other.count('/status/500');
    const elsewhere = await get(`/redirect?to=${encodeURIComponent(`${other.url}/status/500`)}`);
    assert.equal(elsewhere.outcome, 'failure');
    assert.equal(other.count('/status/500'), before + 1);
  });

  test('a redirect to another host is not followed and succeeds with a warning', async () => {
    const to = `http://localhost:${String(other.port)}/status/500`;
    const before = other.requests.length;
    const result = await get(`/redirect?to=${encodeURIComponent(to)}`);
    assert.deepEqual(result, {
      outcome: 'warning',
      output: 'Probe terminated redirects, Response body: moved',
    });
    assert.equal(other.requests.length, before);
  });

  test('a 3xx that is not followed is a warning', async () => {
    assert.equal((await get('/status/304')).outcome, 'warning');
  });

  test('a redirect loop stops after 10 requests', async () => {
    const before = http.count('/loop');
    const result = await get('/loop');
    assert.deepEqual(result, {
      outcome: 'failure',
      output: 'Get "/loop": stopped after 10 redirects',
    });
    assert.equal(http.count('/loop') - before, 10);
  });

  test('no answer within the timeout is a failure', async () => {
    const started = Date.now();
    const result = await get('/slow', {}, 150);
    assert.equal(result.outcome, 'failure');
    assert.equal(
      result.output,
      `Get "${http.url}/slow": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`,
    );
    assert.ok(Date.now() - started < 5000);
    await waitFor(() => http.openSockets() === 0, { intervalMs: 10, what: 'the socket closed' });
  });

  test('a closed port fails as connection refused', async () => {
    const port = await closedPort();
    const result = await probe({ httpGet: { port, path: '/' } });
    assert.deepEqual(result, {
      outcome: 'failure',
      output: `Get "http://${HOST}:${String(port)}/": dial tcp ${HOST}:${String(port)}: connect: connection refused`,
    });
  });

  test('headers: kube-probe user agent, Accept */*, the probe headers, Host', async () => {
    await get('/echo?x=1', {
      httpHeaders: [
        { name: 'X-Custom', value: 'a' },
        { name: 'Host', value: 'example.test' },
      ],
    });
    const seen = http.requests.at(-1);
    assert.ok(seen);
    assert.equal(seen.path, '/echo');
    assert.equal(seen.headers['user-agent'], 'kube-probe/1.37');
    assert.equal(seen.headers.accept, '*/*');
    assert.equal(seen.headers['x-custom'], 'a');
    assert.equal(seen.headers.host, 'example.test');
    assert.equal(seen.headers.connection, 'close');

    await get('/echo', {
      httpHeaders: [
        { name: 'User-Agent', value: 'mine' },
        { name: 'Accept', value: '' },
      ],
    });
    const second = http.requests.at(-1);
    assert.equal(second?.headers['user-agent'], 'mine');
    assert.equal(second?.headers.accept, undefined);
  });

  test('the body kept is at most 10 KiB', async () => {
    const result = await get('/big');
    assert.equal(result.outcome, 'success');
    assert.equal(result.output.length, 10 * 1024);
  });

  test('a named port resolves through the container ports; an unknown name throws', async () => {
    const c: V1Container = { name: 'main', ports: [{ name: 'web', containerPort: http.port }] };
    const t = target({ container: c });
    const result = await probe({ httpGet: { port: 'web', path: '/status/200' } }, 10_000, t);
    assert.equal(result.outcome, 'success');
    await assert.rejects(probe({ httpGet: { port: 'nope', path: '/' } }, 10_000, t), {
      message: 'port nope not found',
    });
  });

  test('host defaults to the pod IP, and the host field wins over it', async () => {
    const wrongIP = target({ podIP: '127.0.0.2' });
    const p: V1Probe = { httpGet: { port: http.port, path: '/status/200', host: HOST } };
    assert.equal((await probe(p, 10_000, wrongIP)).outcome, 'success');
  });

  test('HTTPS without certificate verification', async () => {
    const cert = await selfSignedCertificate({ nodeName: 'probe-test', ips: [HOST] });
    const https = await httpFixture(cert);
    try {
      const result = await probe({
        httpGet: {
          port: https.port,
          path: '/status/200',
          scheme: 'HTTPS',
          httpHeaders: [{ name: 'Host', value: 'example.test' }],
        },
      });
      assert.equal(result.outcome, 'success');
    } finally {
      await https.close();
    }
  });
});

describe('tcpSocket', () => {
  test('an open port succeeds and the connection is closed again', async () => {
    const tcp = await tcpFixture();
    try {
      assert.equal((await probe({ tcpSocket: { port: tcp.port } })).outcome, 'success');
      assert.equal(tcp.accepted(), 1);
    } finally {
      await tcp.close();
    }
  });

  test('a closed port fails', async () => {
    const port = await closedPort();
    assert.deepEqual(await probe({ tcpSocket: { port } }), {
      outcome: 'failure',
      output: `dial tcp ${HOST}:${String(port)}: connect: connection refused`,
    });
  });
});

describe('grpc', () => {
  let grpc: GrpcFixture;
  before(async () => {
    grpc = await grpcFixture();
    grpc.services.set('', 1);
    grpc.services.set('db', 2);
    grpc.services.set('unknown', 0);
    grpc.services.set('slow', 'hang');
  });
  after(() => grpc.close());
  const check = (service?: string, timeoutMs = 10_000) =>
    probe({ grpc: { port: grpc.port, ...(service === undefined ? {} : { service }) } }, timeoutMs);

  test('SERVING is a success', async () => {
    assert.deepEqual(await check(), { outcome: 'success', output: 'service is serving' });
    assert.equal(grpc.asked.at(-1), '');
    assert.match(grpc.userAgent() ?? '', /^kube-probe\/1\.37/);
  });

  test('NOT_SERVING and UNKNOWN fail', async () => {
    assert.deepEqual(await check('db'), {
      outcome: 'failure',
      output: 'service unhealthy (responded with "NOT_SERVING")',
    });
    assert.equal(grpc.asked.at(-1), 'db');
    assert.equal((await check('unknown')).output, 'service unhealthy (responded with "UNKNOWN")');
  });

  test('a non-OK grpc-status fails with its code and message', async () => {
    assert.deepEqual(await check('missing'), {
      outcome: 'failure',
      output: 'error: health rpc probe failed: rpc error: code = NotFound desc = unknown service',
    });
  });

  test('a server without the health service', async () => {
    const bare = await grpcFixture(false);
    try {
      const result = await probe({ grpc: { port: bare.port } });
      assert.equal(result.outcome, 'failure');
      assert.match(
        result.output,
        /^error: this server does not implement the grpc health protocol \(grpc\.health\.v1\.Health\): /,
      );
    } finally {
      await bare.close();
    }
  });

  test('no answer within the timeout', async () => {
    assert.deepEqual(await check('slow', 150), {
      outcome: 'failure',
      output: 'timeout: health rpc did not complete within 150ms',
    });
  });

  test('a closed port fails', async () => {
    const port = await closedPort();
    const result = await probe({ grpc: { port } });
    assert.equal(result.outcome, 'failure');
    assert.equal(
      result.output,
      `error: failed to connect service at "${HOST}:${String(port)}": dial tcp ${HOST}:${String(port)}: connect: connection refused`,
    );
  });

  test('protobuf encoding of the request and decoding of the response', () => {
    assert.deepEqual([...encodeHealthCheckRequest('')], [0, 0, 0, 0, 0]);
    assert.deepEqual([...encodeHealthCheckRequest('ab')], [0, 0, 0, 0, 4, 0x0a, 2, 0x61, 0x62]);
    const long = encodeHealthCheckRequest('s'.repeat(200));
    assert.deepEqual([...long.subarray(0, 8)], [0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
    assert.equal(decodeHealthCheckResponse(Buffer.alloc(0)), 0);
    assert.equal(decodeHealthCheckResponse(Buffer.from([0x08, 0x01])), 1);
    // Unknown fields of every wire type are skipped.
    const unknown = [0x10, 0x96, 0x01, 0x1a, 0x02, 0x61, 0x62, 0x25, 1, 2, 3, 4, 0x08, 0x02];
    assert.equal(decodeHealthCheckResponse(Buffer.from(unknown)), 2);
    assert.throws(() => decodeHealthCheckResponse(Buffer.from([0x08])));
  });
});

describe('IPv6 pod IP', () => {
  test('httpGet and tcpSocket join an IPv6 host in brackets', async (t) => {
    const server = createServer((req, res) => res.end(req.headers.host ?? ''));
    await new Promise<void>((resolve) => server.listen(0, '::1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const port = (server.address() as AddressInfo).port;
    const v6 = target({ podIP: '::1' });
    assert.deepEqual(await probe({ httpGet: { port, path: '/' } }, 10_000, v6), {
      outcome: 'success',
      output: `[::1]:${String(port)}`,
    });
    assert.equal((await probe({ tcpSocket: { port } }, 10_000, v6)).outcome, 'success');
    const closed = await closedPort();
    assert.equal(
      (await probe({ tcpSocket: { port: closed } }, 10_000, v6)).output,
      `dial tcp [::1]:${String(closed)}: connect: connection refused`,
    );
  });
});

describe('exec', () => {
  test('exit code 0 succeeds, any other fails with the output', async () => {
    const { exec } = execFixture();
    const t = target({ exec });
    const ok = await probe({ exec: { command: ['sh', '-c', 'echo fine'] } }, 5000, t);
    assert.deepEqual(ok, { outcome: 'success', output: 'fine\n' });
    const bad = await probe(
      { exec: { command: ['sh', '-c', 'echo broken >&2; exit 1'] } },
      5000,
      t,
    );
    assert.deepEqual(bad, { outcome: 'failure', output: 'broken\n' });
  });

  test('a command that outlives the timeout fails and is killed', async () => {
    const fixture = execFixture();
    const result = await probe({ exec: { command: ['sleep', '30'] } }, 200, target(fixture));
    assert.deepEqual(result, { outcome: 'failure', output: 'command "sleep 30" timed out' });
    const pid = fixture.pids[0];
    assert.ok(pid !== undefined);
    await waitFor(() => !alive(pid) && fixture.running() === 0, {
      intervalMs: 10,
      what: 'the command killed',
    });
  });

  test('$(VAR) in the command expands from the container env', async () => {
    const { exec } = execFixture();
    const c: V1Container = {
      name: 'main',
      env: [
        { name: 'GREETING', value: 'hello' },
        { name: 'FROM_SECRET', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } },
      ],
    };
    const command = [
      'echo',
      '$(GREETING)',
      '$$(GREETING)',
      '$(FROM_SECRET)',
      '$(MISSING)',
      '$(open',
      'a$b',
    ];
    const result = await probe({ exec: { command } }, 5000, target({ container: c, exec }));
    assert.deepEqual(result, {
      outcome: 'success',
      output: 'hello $(GREETING) $(FROM_SECRET) $(MISSING) $(open a$b\n',
    });
  });

  test('an exec that cannot run the command throws', async () => {
    const { exec } = execFixture();
    await assert.rejects(
      probe({ exec: { command: ['/nonexistent/probe'] } }, 5000, target({ exec })),
    );
    await assert.rejects(probe({ exec: { command: ['true'] } }), /exec probes are not supported/);
  });
});

describe('validateProbe', () => {
  const c: V1Container = { name: 'main', ports: [{ name: 'web', containerPort: 8080 }] };

  test('valid probes', () => {
    assert.equal(validateProbe({ httpGet: { port: 'web', path: '/' } }, 'liveness', c), undefined);
    assert.equal(validateProbe({ tcpSocket: { port: 80 } }, 'readiness', c), undefined);
    assert.equal(validateProbe({ grpc: { port: 9090 } }, 'startup', c), undefined);
    assert.equal(
      validateProbe({ exec: { command: ['true'] }, successThreshold: 3 }, 'readiness', c),
      undefined,
    );
    assert.equal(
      validateProbe({ exec: { command: ['true'] }, successThreshold: 1 }, 'liveness'),
      undefined,
    );
  });

  test('no handler, two handlers', () => {
    assert.equal(
      validateProbe({ periodSeconds: 5 }, 'readiness'),
      'readinessProbe: Required value: must specify a handler type',
    );
    assert.equal(
      validateProbe({ exec: { command: ['true'] }, tcpSocket: { port: 80 } }, 'liveness'),
      'livenessProbe: Forbidden: may not specify more than 1 handler type',
    );
  });

  test('successThreshold must be 1 for liveness and startup', () => {
    const p: V1Probe = { tcpSocket: { port: 80 }, successThreshold: 2 };
    assert.equal(
      validateProbe(p, 'liveness'),
      'livenessProbe.successThreshold: Invalid value: 2: must be 1',
    );
    assert.equal(
      validateProbe(p, 'startup'),
      'startupProbe.successThreshold: Invalid value: 2: must be 1',
    );
    assert.equal(validateProbe(p, 'readiness'), undefined);
  });

  test('ports: unknown names, bad names, out of range', () => {
    assert.equal(
      validateProbe({ httpGet: { port: 'metrics', path: '/' } }, 'readiness', c),
      'readinessProbe.httpGet.port: Invalid value: "metrics": no port of container "main" is named so',
    );
    assert.match(
      validateProbe({ tcpSocket: { port: 'Not_A_Name' } }, 'liveness') ?? '',
      /^livenessProbe\.tcpSocket\.port: Invalid value: "Not_A_Name": must be a valid port name/,
    );
    assert.equal(
      validateProbe({ tcpSocket: { port: 70000 } }, 'liveness'),
      'livenessProbe.tcpSocket.port: Invalid value: 70000: must be between 1 and 65535, inclusive',
    );
    assert.equal(
      validateProbe({ grpc: { port: 0 } }, 'liveness'),
      'livenessProbe.grpc.port: Invalid value: 0: must be between 1 and 65535, inclusive',
    );
  });

  test('other fields', () => {
    assert.equal(
      validateProbe({ exec: { command: [] }, periodSeconds: -1 }, 'liveness'),
      'livenessProbe.periodSeconds: Invalid value: -1: must be greater than or equal to 0; livenessProbe.exec.command: Required value',
    );
    assert.equal(
      validateProbe({ httpGet: { port: 80, scheme: 'FTP' } }, 'liveness'),
      'livenessProbe.httpGet.scheme: Unsupported value: "FTP": supported values: "HTTP", "HTTPS"',
    );
    assert.equal(
      validateProbe({ tcpSocket: { port: 80 }, terminationGracePeriodSeconds: 5 }, 'readiness'),
      'readinessProbe.terminationGracePeriodSeconds: Invalid value: 5: must not be set for readinessProbes',
    );
  });

  test('validateProbes checks every probe of a container', () => {
    assert.equal(validateProbes(c), undefined);
    assert.equal(
      validateProbes({ ...c, livenessProbe: {}, startupProbe: { tcpSocket: { port: 'x' } } }),
      'startupProbe.tcpSocket.port: Invalid value: "x": no port of container "main" is named so; livenessProbe: Required value: must specify a handler type',
    );
  });
});
