import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { ensureGoModuleBinaries, type BuildOptions } from './build.js';
import { freePorts } from './cluster.js';
import { DevClusterError } from './errors.js';
import { modulesDir } from './paths.js';
import { spawnOwned, stopProcess } from './process.js';

/** The Jaeger release `modules/jaeger/go.mod` pins (a unit test checks they agree). */
export const JAEGER_VERSION = 'v1.75.0';

/** Builds Jaeger v2 into the cache on first use (minutes); later returns the cached binary. */
export async function ensureJaeger(
  options: BuildOptions = {},
): Promise<{ readonly binary: string; readonly built: boolean; readonly elapsedMs: number }> {
  const result = await ensureGoModuleBinaries(
    {
      moduleDir: fileURLToPath(new URL('jaeger/', modulesDir)),
      dirName: `jaeger-${JAEGER_VERSION}`,
      targets: [{ name: 'jaeger', pkg: 'github.com/jaegertracing/jaeger/cmd/jaeger' }],
    },
    options,
  );
  const binary = result.paths.jaeger;
  if (binary === undefined) throw new Error('no jaeger target');
  return { binary, built: result.built, elapsedMs: result.elapsedMs };
}

/** A running Jaeger: where to send spans and where to read them back. */
export interface JaegerInstance {
  /** OTLP/HTTP base URL (what `OTEL_EXPORTER_OTLP_ENDPOINT` takes), e.g. `http://127.0.0.1:4318`. */
  readonly otlpHttpEndpoint: string;
  /** Base URL of the query service (`/api/services`, `/api/traces?service=...`). */
  readonly queryUrl: string;
  /** Stops the process (SIGTERM, then SIGKILL after 5 s) and removes its folder. */
  stop(): Promise<void>;
}

export interface StartJaegerOptions {
  /** The binary, from {@link ensureJaeger}. */
  readonly binary: string;
  /** Folder for the configuration and the log; made if missing. */
  readonly dir: string;
  /** How long to wait for the query service to answer. Default: 60 000 ms. */
  readonly readyTimeoutMs?: number;
  readonly signal?: AbortSignal;
}

/**
 * Starts Jaeger with in-memory storage, its OTLP/HTTP receiver and query service on free ports
 * of 127.0.0.1 (no other port: no gRPC receiver, no metrics), and resolves once its query API
 * answers. The process cannot outlive this one (see `spawnOwned`).
 */
export async function startJaeger(options: StartJaegerOptions): Promise<JaegerInstance> {
  await mkdir(options.dir, { recursive: true });
  const [otlpPort, queryPort, queryGrpcPort] = await freePorts(3);
  const host = '127.0.0.1';
  const config = join(options.dir, 'jaeger.yaml');
  await writeFile(
    config,
    [
      'service:',
      '  extensions: [jaeger_storage, jaeger_query]',
      '  pipelines:',
      '    traces:',
      '      receivers: [otlp]',
      '      exporters: [jaeger_storage_exporter]',
      '  telemetry:',
      '    metrics:',
      '      level: none',
      '    logs:',
      '      level: info',
      'extensions:',
      '  jaeger_storage:',
      '    backends:',
      '      memstore:',
      '        memory:',
      '          max_traces: 100000',
      '  jaeger_query:',
      '    storage:',
      '      traces: memstore',
      '    http:',
      `      endpoint: ${host}:${String(queryPort)}`,
      '    grpc:',
      `      endpoint: ${host}:${String(queryGrpcPort)}`,
      'receivers:',
      '  otlp:',
      '    protocols:',
      '      http:',
      `        endpoint: ${host}:${String(otlpPort)}`,
      'exporters:',
      '  jaeger_storage_exporter:',
      '    trace_storage: memstore',
      '',
    ].join('\n'),
  );
  const logPath = join(options.dir, 'jaeger.log');
  const child = spawnOwned(options.binary, { args: ['--config', config], logPath });
  const queryUrl = `http://${host}:${String(queryPort)}`;
  const instance: JaegerInstance = {
    otlpHttpEndpoint: `http://${host}:${String(otlpPort)}`,
    queryUrl,
    stop: async () => {
      await stopProcess(child, 5_000);
      await rm(options.dir, { recursive: true, force: true });
    },
  };
  const deadline = Date.now() + (options.readyTimeoutMs ?? 60_000);
  try {
    for (;;) {
      options.signal?.throwIfAborted();
      if (child.exitCode !== null || child.signalCode !== null)
        throw new DevClusterError(
          'StartFailed',
          `jaeger exited at start (${String(child.exitCode ?? child.signalCode)}): ${await tail(logPath)}`,
          { logPath },
        );
      const ok = await fetch(`${queryUrl}/api/services`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) return instance;
      if (Date.now() > deadline)
        throw new DevClusterError(
          'StartFailed',
          `jaeger's query service did not answer within ${String(options.readyTimeoutMs ?? 60_000)} ms: see ${logPath}`,
          { logPath },
        );
      await delay(200);
    }
  } catch (err) {
    await instance.stop();
    throw err;
  }
}

async function tail(path: string): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trim().split('\n').slice(-5).join(' | ');
}
