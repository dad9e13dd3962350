import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseSampleRate, parseTraceExporter } from '../../../src/cli/go-flags.js';
import { tracingPlan } from '../../../src/cli/tracing.js';

const ENDPOINT = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' };

test('tracing is off unless something says where spans go', () => {
  assert.deepEqual(tracingPlan({}, {}), { enabled: false, why: 'no OTLP endpoint configured' });
  assert.equal(tracingPlan({}, ENDPOINT).enabled, true);
  assert.equal(
    tracingPlan({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/v1/traces' }).enabled,
    true,
  );
  assert.equal(tracingPlan({ traceExporter: 'otlp' }, {}).enabled, true);
  assert.equal(tracingPlan({}, { OTEL_TRACES_EXPORTER: 'otlp' }).enabled, true);
  const byRate = tracingPlan({ traceSampleRate: 25 }, {});
  assert.deepEqual(byRate, {
    enabled: true,
    endpoint: 'http://localhost:4318',
    ratio: 0.25,
    attributes: {},
  });
});

test('each way of turning tracing off wins over an endpoint', () => {
  for (const [flags, env] of [
    [{ traceSampleRate: 0 }, ENDPOINT],
    [{ traceExporter: 'none' as const }, ENDPOINT],
    [{}, { ...ENDPOINT, OTEL_TRACES_EXPORTER: 'none' }],
    [{ traceSampleRate: 100 }, { ...ENDPOINT, OTEL_SDK_DISABLED: 'true' }],
  ] as const)
    assert.equal(tracingPlan(flags, env).enabled, false, JSON.stringify([flags, env]));
});

test('the flags name the service and add resource attributes; without a rate the SDK samples', () => {
  const plan = tracingPlan(
    { traceServiceName: 'vk-edge', traceTag: { region: 'eu', tier: 'gold' } },
    ENDPOINT,
  );
  assert.deepEqual(plan, {
    enabled: true,
    endpoint: 'http://127.0.0.1:4318',
    serviceName: 'vk-edge',
    attributes: { region: 'eu', tier: 'gold' },
  });
});

test('what the agent cannot honour is one clear error', () => {
  assert.throws(
    () => tracingPlan({}, { ...ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' }),
    /OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported: .*HTTP/,
  );
  assert.throws(
    () => tracingPlan({}, { OTEL_TRACES_EXPORTER: 'zipkin' }),
    /OTEL_TRACES_EXPORTER=zipkin is not supported/,
  );
});

test('--trace-sample-rate takes Go values: always, never, a percentage', () => {
  assert.equal(parseSampleRate('always'), 100);
  assert.equal(parseSampleRate('never'), 0);
  assert.equal(parseSampleRate('12.5'), 12.5);
  for (const bad of ['-1', '101', 'half', ''])
    assert.throws(() => parseSampleRate(bad), /percentage from 0 to 100/);
  assert.equal(parseTraceExporter('otlp'), 'otlp');
  assert.equal(parseTraceExporter('none'), 'none');
  assert.throws(() => parseTraceExporter('jaeger,zpages'), /'jaeger' is not an exporter/);
});

/** Every `.ts` file under `dir`. */
async function sources(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => join(e.parentPath, e.name));
}

test('only the command line loads the OpenTelemetry SDK, and only on demand', async () => {
  const src = fileURLToPath(new URL('../../../src/', import.meta.url));
  const offenders: string[] = [];
  for (const file of await sources(src)) {
    const name = relative(src, file);
    const text = await readFile(file, 'utf8');
    const imports = [...text.matchAll(/(?:from|import\()\s*'([^']+)'/g)].map((m) => m[1] ?? '');
    for (const spec of imports) {
      const sdk = spec.startsWith('@opentelemetry/') && spec !== '@opentelemetry/api';
      if (sdk && name !== 'cli/tracing-sdk.ts') offenders.push(`${name} imports ${spec}`);
      if (spec.endsWith('tracing-sdk.js') && name !== 'cli/tracing.ts')
        offenders.push(`${name} imports ${spec}`);
    }
    if (name === 'cli/tracing.ts')
      assert.doesNotMatch(text, /from '\.\/tracing-sdk\.js'/, 'a static import would load it');
  }
  assert.deepEqual(offenders, []);
});
