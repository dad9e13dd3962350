/**
 * `ExternalProvider`: the contract (`provider.ts`) served by a provider in another process, in
 * any language, through the provider protocol. It has the optional capabilities the provider
 * names in its handshake, plus `ping` and `notifyNodeStatus` always, so that a provider that
 * cannot be reached makes the node NotReady.
 */
import type { V1Node, V1Pod, V1PodStatus } from '../../wire.js';
import { PassThrough, type Duplex, type Readable, type Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { aborted, sleep } from '../../abort.js';
import { errorMessage, permanent, VirtualKubeletError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import {
  CAPABILITY_NAMES,
  type AttachStreams,
  type Capability,
  type CapabilityInterfaces,
  type ContainerLogOptions,
  type PodAddresses,
  type PodEvent,
  type Provider,
  type ResolvedVolume,
  type Summary,
} from '../../provider.js';
import {
  fromCallError,
  NOT_CARRIED,
  PROTOCOL_VERSION,
  providerService,
  type GetPodResponse,
  type GetPodStatusResponse,
  type HandshakeResponse,
  type ListPodsResponse,
  type LogChunk,
  type LogsRequest,
  type NodeUpdate,
  type PodEventUpdate,
  type PodUpdate,
  type PortForwardRequest,
  type PortForwardResponse,
  type PreparePodResponse,
  type StreamRequest,
  type StreamResponse,
  type StreamStart,
} from './protocol.js';
import { either, nextChunk } from './streams.js';

export interface ExternalProviderOptions {
  /** The node the agent serves; sent in the handshake. */
  readonly nodeName: string;
  /** `unix:///path.sock` or `host:port`. */
  readonly address: string;
  /** Default: plain text (right for a unix socket); TCP wants `grpc.credentials.createSsl`. */
  readonly credentials?: grpc.ChannelCredentials;
  /** Default: `silentLogger`. */
  readonly logger?: Logger;
  /** The deadline of every unary call, in milliseconds. Default: 30 000. */
  readonly callTimeoutMs?: number;
  /** The longest wait between two attempts to reopen a watch, in milliseconds. Default: 5 000. */
  readonly reconnectMaxMs?: number;
  /** The protocol versions offered in the handshake. Default: `['v1alpha1']`. */
  readonly versions?: readonly string[];
  /** The agent's version, for the provider's logs. Default: empty. */
  readonly agentVersion?: string;
  /** Called by `close()` after the connection is closed (to stop a provider process). */
  readonly onClose?: (signal: AbortSignal) => Promise<void>;
}

type UnaryMethod = (
  request: unknown,
  options: grpc.CallOptions,
  callback: (err: grpc.ServiceError | null, response: unknown) => void,
) => grpc.ClientUnaryCall;
type ServerStreamMethod = (
  request: unknown,
  options?: grpc.CallOptions,
) => grpc.ClientReadableStream<unknown>;
type DuplexMethod = (options?: grpc.CallOptions) => grpc.ClientDuplexStream<unknown, unknown>;

const json = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));
const parse = (bytes: Buffer, what: string): unknown => {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new VirtualKubeletError('Internal', `the provider sent ${what} that is not JSON`, {
      cause: err,
    });
  }
};

/** The HTTP/2 flow-control window of the connection and of each stream. */
const FLOW_CONTROL_WINDOW_BYTES = 8 * 1024 * 1024;

/** Back-off of the `attempt`-th retry: 100 ms doubling up to `maxMs`. */
const backoffMs = (attempt: number, maxMs: number): number =>
  Math.min(maxMs, 100 * 2 ** Math.min(attempt, 16));

/**
 * Does the handshake at `client`: resolves to the provider's answer, or throws `Permanent` with
 * one clear message when the provider speaks another protocol version.
 */
async function handshake(
  client: grpc.Client,
  options: ExternalProviderOptions,
  signal: AbortSignal,
): Promise<HandshakeResponse> {
  const versions = options.versions ?? [PROTOCOL_VERSION];
  const mismatch = (theirs: string): VirtualKubeletError =>
    permanent(
      `the provider at ${options.address} speaks protocol ${theirs}; this agent speaks ${versions.join(', ')}`,
    );
  let answer: HandshakeResponse;
  try {
    answer = await unary<HandshakeResponse>(
      client,
      'Handshake',
      { versions, nodeName: options.nodeName, agentVersion: options.agentVersion ?? '' },
      signal,
      options.callTimeoutMs ?? 30_000,
    );
  } catch (err) {
    const status = (err as { cause?: { code?: unknown } }).cause?.code;
    // No Handshake of this package: the provider serves another version of the service.
    if (status === grpc.status.UNIMPLEMENTED) throw mismatch(`other than ${PROTOCOL_VERSION}`);
    // The provider refused every version offered; its message names its own.
    if (status === grpc.status.INVALID_ARGUMENT)
      throw permanent(
        `the provider at ${options.address} refused the handshake: ${errorMessage(err)}`,
        err,
      );
    throw err;
  }
  if (!versions.includes(answer.version)) throw mismatch(`"${answer.version}"`);
  return answer;
}

function unary<T>(
  client: grpc.Client,
  method: string,
  request: unknown,
  signal: AbortSignal,
  timeoutMs: number,
): Promise<T> {
  signal.throwIfAborted();
  const fn = (client as unknown as Record<string, UnaryMethod>)[method];
  if (!fn) return Promise.reject(new Error(`no method ${method}`));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      call.cancel();
    };
    const call = fn.call(client, request, { deadline: Date.now() + timeoutMs }, (err, response) => {
      signal.removeEventListener('abort', onAbort);
      if (signal.aborted) reject(signal.reason as Error);
      else if (err) reject(fromCallError(err, method));
      else resolve(response as T);
    });
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/**
 * A provider in another process. Make one with {@link ExternalProvider.connect}, which waits for
 * the handshake. Calls that fail because the provider is down throw `Unavailable` (the core
 * retries them); watch streams reopen by themselves with back-off, and after a reopen the pods
 * are listed again and pushed, so no status change is lost across a restart of the provider.
 */
export class ExternalProvider implements Provider {
  declare readonly notifyPods?: CapabilityInterfaces['podNotifier']['notifyPods'];
  declare readonly configureNode?: CapabilityInterfaces['nodeConfigurer']['configureNode'];
  declare readonly getContainerLogs?: CapabilityInterfaces['logs']['getContainerLogs'];
  declare readonly runInContainer?: CapabilityInterfaces['exec']['runInContainer'];
  declare readonly attachToContainer?: CapabilityInterfaces['attach']['attachToContainer'];
  declare readonly portForward?: CapabilityInterfaces['portForward']['portForward'];
  declare readonly getStatsSummary?: CapabilityInterfaces['stats']['getStatsSummary'];
  declare readonly getMetricsResource?: CapabilityInterfaces['metricsResource']['getMetricsResource'];
  declare readonly setPodVolumes?: CapabilityInterfaces['volumes']['setPodVolumes'];
  declare readonly notifyPodEvents?: CapabilityInterfaces['events']['notifyPodEvents'];
  declare readonly preparePod?: CapabilityInterfaces['podAddresses']['preparePod'];

  readonly #options: ExternalProviderOptions;
  readonly #client: grpc.Client;
  readonly #log: Logger;
  readonly #timeoutMs: number;
  readonly #capabilities: ReadonlySet<Capability>;
  readonly #closing = new AbortController();
  /** The provider's name, from its handshake. */
  readonly providerName: string;

  private constructor(
    options: ExternalProviderOptions,
    client: grpc.Client,
    answer: HandshakeResponse,
  ) {
    this.#options = options;
    this.#client = client;
    this.#log = (options.logger ?? silentLogger).child({ provider: 'external' });
    this.#timeoutMs = options.callTimeoutMs ?? 30_000;
    const known: ReadonlySet<string> = new Set(CAPABILITY_NAMES);
    this.#capabilities = new Set(
      answer.capabilities.filter(
        (c): c is Capability => known.has(c) && !NOT_CARRIED.has(c as Capability),
      ),
    );
    this.providerName = answer.providerName;
    const has = (c: Capability): boolean => this.#capabilities.has(c);
    if (has('podNotifier')) this.notifyPods = (cb) => this.#watchPods(cb);
    if (has('nodeConfigurer')) this.configureNode = (node) => this.#configureNode(node);
    if (has('logs'))
      this.getContainerLogs = (ns, pod, c, opts, signal) => this.#logs(ns, pod, c, opts, signal);
    if (has('exec'))
      this.runInContainer = async (ns, pod, container, command, streams, signal) => {
        const code = await this.#session('Exec', { ns, pod, container, command }, streams, signal);
        if (code === undefined)
          throw new VirtualKubeletError('Internal', 'the provider ended exec without an exit code');
        return code;
      };
    if (has('attach'))
      this.attachToContainer = async (ns, pod, container, streams, signal) => {
        await this.#session('Attach', { ns, pod, container, command: [] }, streams, signal);
      };
    if (has('portForward'))
      this.portForward = (ns, pod, port, stream, signal) =>
        this.#portForward(ns, pod, port, stream, signal);
    if (has('stats'))
      this.getStatsSummary = async (signal) =>
        parse(
          (await this.#unary<{ summaryJson: Buffer }>('GetStatsSummary', {}, signal)).summaryJson,
          'a summary',
        ) as Summary;
    if (has('metricsResource'))
      this.getMetricsResource = async (signal) =>
        (await this.#unary<{ text: string }>('GetMetricsResource', {}, signal)).text;
    if (has('volumes'))
      this.setPodVolumes = (pod, volumes, signal) => this.#setPodVolumes(pod, volumes, signal);
    if (has('events')) this.notifyPodEvents = (cb) => this.#watchEvents(cb);
    if (has('podAddresses'))
      this.preparePod = async (pod, signal): Promise<PodAddresses> => {
        const a = await this.#unary<PreparePodResponse>(
          'PreparePod',
          { podJson: json(pod) },
          signal,
        );
        return { podIPs: a.podIps, ...(a.hostIp ? { hostIP: a.hostIp } : {}) };
      };
  }

  /**
   * Connects to the provider at `options.address` and does the handshake, retrying with
   * back-off while the provider cannot be reached, until `signal` fires. A provider that
   * answers with another protocol version fails at once with one `Permanent` error that names
   * both versions.
   */
  static async connect(
    options: ExternalProviderOptions,
    signal: AbortSignal,
  ): Promise<ExternalProvider> {
    const Client = providerService();
    const client = new Client(
      options.address,
      options.credentials ?? grpc.credentials.createInsecure(),
      {
        // Keep reconnect attempts frequent: a restarted provider is reachable within a second.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': 1000,
        // HTTP/2's default window (64 KiB) caps a stream at one window per round trip: exec,
        // logs and port-forward carry bulk data.
        'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
      },
    );
    const log = options.logger ?? silentLogger;
    for (let attempt = 0; ; attempt++) {
      try {
        const answer = await handshake(client, options, signal);
        log.info(
          {
            address: options.address,
            provider: answer.providerName,
            capabilities: answer.capabilities,
          },
          'connected to the external provider',
        );
        return new ExternalProvider(options, client, answer);
      } catch (err) {
        if (signal.aborted || (err instanceof VirtualKubeletError && err.code === 'Permanent')) {
          client.close();
          throw signal.aborted
            ? new VirtualKubeletError(
                'Unavailable',
                `the provider at ${options.address} did not answer the handshake: ${errorMessage(err)}`,
                { cause: err },
              )
            : err;
        }
        log.debug({ err, attempt }, 'the external provider is not reachable yet');
        await sleep(backoffMs(attempt, options.reconnectMaxMs ?? 5000), signal);
      }
    }
  }

  /** The capabilities the provider named in its handshake. */
  get capabilities(): readonly Capability[] {
    return [...this.#capabilities];
  }

  async createPod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#unary('CreatePod', { podJson: json(pod) }, signal);
  }

  async updatePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#unary('UpdatePod', { podJson: json(pod) }, signal);
  }

  async deletePod(pod: V1Pod, signal: AbortSignal): Promise<void> {
    await this.#unary('DeletePod', { podJson: json(pod) }, signal);
  }

  async getPod(namespace: string, name: string, signal: AbortSignal): Promise<V1Pod | undefined> {
    const r = await this.#unary<GetPodResponse>('GetPod', { namespace, name }, signal);
    return r.found ? (parse(r.podJson, 'a pod') as V1Pod) : undefined;
  }

  async getPodStatus(
    namespace: string,
    name: string,
    signal: AbortSignal,
  ): Promise<V1PodStatus | undefined> {
    const r = await this.#unary<GetPodStatusResponse>('GetPodStatus', { namespace, name }, signal);
    return r.found ? (parse(r.statusJson, 'a pod status') as V1PodStatus) : undefined;
  }

  async getPods(signal: AbortSignal): Promise<V1Pod[]> {
    const r = await this.#unary<ListPodsResponse>('ListPods', {}, signal);
    return r.podsJson.map((b) => parse(b, 'a pod') as V1Pod);
  }

  /**
   * The handshake again (so a provider restarted with another version is noticed), then the
   * provider's own Ping when it has `nodeProvider`. Rejects while the provider is down.
   */
  async ping(signal: AbortSignal): Promise<void> {
    const answer = await handshake(this.#client, this.#options, signal);
    if (answer.capabilities.includes('nodeProvider')) await this.#unary('Ping', {}, signal);
  }

  /** Node statuses pushed by a provider with `nodeProvider`; nothing from one without. */
  notifyNodeStatus(callback: (node: V1Node) => void): void {
    if (!this.#capabilities.has('nodeProvider')) return;
    this.#watch('WatchNodeStatus', (m) => {
      callback(parse((m as NodeUpdate).nodeJson, 'a node') as V1Node);
    });
  }

  /** Ends every watch and session, closes the connection, then calls `onClose`. Idempotent. */
  async close(signal: AbortSignal): Promise<void> {
    if (this.#closing.signal.aborted) return;
    this.#closing.abort(new VirtualKubeletError('Unavailable', 'the external provider is closed'));
    this.#client.close();
    await this.#options.onClose?.(signal);
  }

  #unary<T>(method: string, request: unknown, signal: AbortSignal): Promise<T> {
    return unary<T>(
      this.#client,
      method,
      request,
      AbortSignal.any([signal, this.#closing.signal]),
      this.#timeoutMs,
    );
  }

  #serverStream(name: string, request: unknown): grpc.ClientReadableStream<unknown> {
    const fn = (this.#client as unknown as Record<string, ServerStreamMethod>)[name];
    if (!fn) throw new VirtualKubeletError('Internal', `no method ${name}`);
    return fn.call(this.#client, request);
  }

  #duplex(name: string): grpc.ClientDuplexStream<unknown, unknown> {
    const fn = (this.#client as unknown as Record<string, DuplexMethod>)[name];
    if (!fn) throw new VirtualKubeletError('Internal', `no method ${name}`);
    return fn.call(this.#client);
  }

  /**
   * Keeps a server stream open until close: reopened with back-off when it ends or fails.
   * `onOpen` runs each time the provider accepts the stream (its headers arrive), the first time
   * too: a change made before the provider took the stream is not lost.
   */
  #watch(method: string, onMessage: (m: unknown) => void, onOpen?: () => Promise<void>): void {
    const closing = this.#closing.signal;
    void (async () => {
      let attempt = 0;
      while (!closing.aborted) {
        const call = this.#serverStream(method, {});
        const ended = new Promise<void>((resolve) => {
          call.on('metadata', () => {
            attempt = 0;
            // Also the first time: what changed before the provider took the stream is listed.
            if (onOpen)
              onOpen().catch((err: unknown) => {
                this.#log.warn({ err, method }, 'resync after a reconnect failed');
              });
          });
          call.on('data', (m: unknown) => {
            try {
              onMessage(m);
            } catch (err) {
              this.#log.warn({ err, method }, 'a message of the provider was dropped');
            }
          });
          call.on('error', (err) => {
            if (!closing.aborted) this.#log.debug({ err, method }, 'watch broken');
            resolve();
          });
          call.on('end', resolve);
        });
        const cancel = (): void => {
          call.cancel();
        };
        closing.addEventListener('abort', cancel, { once: true });
        await ended;
        closing.removeEventListener('abort', cancel);
        if (aborted(closing)) return;
        await sleep(backoffMs(attempt++, this.#options.reconnectMaxMs ?? 5000), closing);
      }
    })();
  }

  #watchPods(callback: (pod: V1Pod) => void): void {
    this.#watch(
      'WatchPods',
      (m) => {
        callback(parse((m as PodUpdate).podJson, 'a pod') as V1Pod);
      },
      // Changes made while the stream was down (or not yet open) are not replayed: list them.
      async () => {
        for (const pod of await this.getPods(this.#closing.signal)) callback(pod);
      },
    );
  }

  #watchEvents(callback: (pod: V1Pod, event: PodEvent) => void): void {
    this.#watch('WatchPodEvents', (message) => {
      const m = message as PodEventUpdate;
      const type = m.type === 'Warning' ? 'Warning' : 'Normal';
      callback(parse(m.podJson, 'a pod') as V1Pod, { type, reason: m.reason, message: m.message });
    });
  }

  async #configureNode(node: V1Node): Promise<void> {
    const r = await this.#unary<{ nodeJson: Buffer }>(
      'ConfigureNode',
      { nodeJson: json(node) },
      AbortSignal.timeout(this.#timeoutMs),
    );
    const wanted = parse(r.nodeJson, 'a node') as V1Node;
    // The contract shapes the Node in place.
    for (const key of Object.keys(node)) Reflect.deleteProperty(node, key);
    Object.assign(node, wanted);
  }

  async #setPodVolumes(
    pod: V1Pod,
    volumes: readonly ResolvedVolume[],
    signal: AbortSignal,
  ): Promise<void> {
    await this.#unary(
      'SetPodVolumes',
      {
        podJson: json(pod),
        volumes: volumes.map((v) => ({
          name: v.name,
          files: v.files.map((f) => ({
            path: f.path,
            data: Buffer.from(f.data),
            mode: f.mode,
            ...(f.owner !== undefined ? { owner: f.owner } : {}),
          })),
        })),
      },
      signal,
    );
  }

  /** The log as a stream, once the provider accepted the request (its errors reject). */
  async #logs(
    namespace: string,
    pod: string,
    container: string,
    options: ContainerLogOptions,
    signal: AbortSignal,
  ): Promise<Readable> {
    signal.throwIfAborted();
    const request: LogsRequest = {
      namespace,
      pod,
      container,
      follow: options.follow,
      previous: options.previous,
      timestamps: options.timestamps,
      ...(options.tailLines !== undefined ? { tailLines: options.tailLines } : {}),
      ...(options.limitBytes !== undefined ? { limitBytes: options.limitBytes } : {}),
      ...(options.sinceSeconds !== undefined ? { sinceSeconds: options.sinceSeconds } : {}),
      ...(options.sinceTime !== undefined ? { sinceTime: options.sinceTime.toISOString() } : {}),
    };
    const call = this.#serverStream(
      'GetContainerLogs',
      request,
    ) as grpc.ClientReadableStream<LogChunk>;
    const out = new PassThrough();
    const stop = AbortSignal.any([signal, this.#closing.signal]);
    const cancel = (): void => {
      call.cancel();
      out.destroy();
    };
    stop.addEventListener('abort', cancel, { once: true });
    out.on('close', () => {
      stop.removeEventListener('abort', cancel);
      call.cancel();
    });
    await new Promise<void>((resolve, reject) => {
      let accepted = false;
      const accept = (): void => {
        accepted = true;
        resolve();
      };
      call.once('metadata', accept);
      call.on('data', (m: LogChunk) => {
        accept();
        if (!out.write(m.data)) {
          call.pause();
          out.once('drain', () => call.resume());
        }
      });
      call.on('end', () => {
        accept();
        out.end();
      });
      call.on('error', (err) => {
        const mapped = stop.aborted
          ? (stop.reason as Error)
          : fromCallError(err, 'GetContainerLogs');
        if (accepted) out.destroy(stop.aborted ? undefined : mapped);
        else {
          out.destroy();
          reject(mapped);
        }
      });
    });
    return out;
  }

  /** An exec or attach session; resolves to the exit code the provider sent, if any. */
  async #session(
    method: 'Exec' | 'Attach',
    target: { ns: string; pod: string; container: string; command: readonly string[] },
    streams: AttachStreams,
    signal: AbortSignal,
  ): Promise<number | undefined> {
    signal.throwIfAborted();
    const stop = AbortSignal.any([signal, this.#closing.signal]);
    const call = this.#duplex(method) as grpc.ClientDuplexStream<StreamRequest, StreamResponse>;
    const done = new AbortController();
    const start: StreamStart = {
      namespace: target.ns,
      pod: target.pod,
      container: target.container,
      command: target.command,
      tty: streams.tty,
      stdin: streams.stdin !== undefined,
      stdout: streams.stdout !== undefined,
      stderr: streams.stderr !== undefined,
    };
    call.write({ start });
    let exitCode: number | undefined;
    const write = (to: Writable | undefined, data: Buffer): void => {
      if (!to || to.destroyed || to.writableEnded) return;
      if (!to.write(data)) {
        call.pause();
        void either(to, ['drain', 'close', 'error'], done.signal).then(() => call.resume());
      }
    };
    const finished = new Promise<void>((resolve, reject) => {
      call.on('data', (m: StreamResponse) => {
        if (m.kind === 'stdout') write(streams.stdout, m.stdout);
        else if (m.kind === 'stderr') write(streams.stderr, m.stderr);
        else if (m.kind === 'exit') exitCode = m.exit.code;
      });
      call.on('end', resolve);
      call.on('error', (err) => {
        reject(stop.aborted ? (stop.reason as Error) : fromCallError(err, method));
      });
    });
    const cancel = (): void => {
      call.cancel();
    };
    stop.addEventListener('abort', cancel, { once: true });
    void this.#pumpStdin(call, streams.stdin, done.signal);
    void this.#pumpResize(call, streams, done.signal);
    try {
      await finished;
      return exitCode;
    } finally {
      done.abort();
      stop.removeEventListener('abort', cancel);
      call.end();
    }
  }

  async #pumpStdin(
    call: grpc.ClientDuplexStream<StreamRequest, StreamResponse>,
    stdin: Readable | undefined,
    stop: AbortSignal,
  ): Promise<void> {
    if (!stdin) return;
    for (;;) {
      const chunk = await nextChunk(stdin, stop);
      if (chunk === undefined) break;
      if (!call.write({ stdin: chunk })) await either(call, ['drain', 'close', 'error'], stop);
    }
    if (!stop.aborted) call.write({ stdinClose: {} });
  }

  async #pumpResize(
    call: grpc.ClientDuplexStream<StreamRequest, StreamResponse>,
    streams: AttachStreams,
    stop: AbortSignal,
  ): Promise<void> {
    if (!streams.tty || !streams.resize) return;
    try {
      for await (const size of streams.resize) {
        if (stop.aborted) return;
        call.write({ resize: { width: size.width, height: size.height } });
      }
    } catch {
      // The session ended meanwhile.
    }
  }

  async #portForward(
    namespace: string,
    pod: string,
    port: number,
    stream: Duplex,
    signal: AbortSignal,
  ): Promise<void> {
    signal.throwIfAborted();
    const stop = AbortSignal.any([signal, this.#closing.signal]);
    const call = this.#duplex('PortForward') as grpc.ClientDuplexStream<
      PortForwardRequest,
      PortForwardResponse
    >;
    const done = new AbortController();
    call.write({ start: { namespace, pod, port } });
    const finished = new Promise<void>((resolve, reject) => {
      call.on('data', (m: PortForwardResponse) => {
        if (stream.destroyed || stream.writableEnded) return;
        if (!stream.write(m.data)) {
          call.pause();
          void either(stream, ['drain', 'close', 'error'], done.signal).then(() => call.resume());
        }
      });
      call.on('end', () => {
        if (!stream.destroyed && !stream.writableEnded) stream.end();
        resolve();
      });
      call.on('error', (err) => {
        reject(stop.aborted ? (stop.reason as Error) : fromCallError(err, 'PortForward'));
      });
    });
    const cancel = (): void => {
      call.cancel();
    };
    stop.addEventListener('abort', cancel, { once: true });
    void (async () => {
      for (;;) {
        const chunk = await nextChunk(stream, done.signal);
        if (chunk === undefined) break;
        if (!call.write({ data: chunk }))
          await either(call, ['drain', 'close', 'error'], done.signal);
      }
      if (!done.signal.aborted) {
        call.write({ closeWrite: {} });
        call.end();
      }
    })();
    try {
      await finished;
    } finally {
      done.abort();
      stop.removeEventListener('abort', cancel);
    }
  }
}
