/**
 * The `external` provider: a provider in another process, in any language, reached through the
 * provider protocol (`proto/virtualkubelet/provider/v1alpha1/provider.proto`, described in
 * docs/provider-protocol.md). With `command`, the agent runs that process itself.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { errorMessage, invalidInput } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { ExternalProvider } from './client.js';
import type { ExternalConfig } from './config.js';
import { ProviderProcess } from './process.js';

export { ExternalProvider, type ExternalProviderOptions } from './client.js';
export { parseExternalConfig, type ExternalConfig, type ExternalTlsConfig } from './config.js';
export { ProviderProcess, type ProviderProcessOptions } from './process.js';
export { ProviderServer, type ProviderServerOptions } from './server.js';
export {
  codeOfStatus,
  ERROR_CODE_KEY,
  PROTO_PATH,
  PROTOCOL_VERSION,
  SERVICE_NAME,
  statusOfCode,
} from './protocol.js';

/** The environment variable that tells a started provider where to listen. */
export const ADDRESS_ENV = 'VK_PROVIDER_ADDRESS';

export interface StartExternalOptions {
  readonly nodeName: string;
  readonly config: ExternalConfig;
  /** Default: `silentLogger`. */
  readonly logger?: Logger;
  /** The agent's version, sent in the handshake. Default: empty. */
  readonly agentVersion?: string;
}

function credentialsOf(config: ExternalConfig): grpc.ChannelCredentials | undefined {
  const tls = config.tls;
  if (!tls) return undefined;
  const read = (what: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw invalidInput(`tls.${what}: cannot read ${path}: ${errorMessage(err)}`, err);
    }
  };
  return grpc.credentials.createSsl(
    read('ca', tls.ca),
    read('key', tls.key),
    read('cert', tls.cert),
  );
}

/**
 * Connects to the provider `config` names, first starting its `command` when given (on a unix
 * socket in a private temporary directory unless `address` is set). Waits up to
 * `connectTimeoutMs` for the handshake; the provider's `close()` stops the process and removes
 * the directory.
 */
export async function startExternalProvider(
  options: StartExternalOptions,
): Promise<ExternalProvider> {
  const { config } = options;
  const logger = (options.logger ?? silentLogger).child({ provider: 'external' });
  const credentials = credentialsOf(config);
  let dir: string | undefined;
  let address = config.address;
  if (address === undefined) {
    dir = mkdtempSync(join(tmpdir(), 'vk-provider-'));
    address = `unix://${join(dir, 'provider.sock')}`;
  }
  const stopProcess = new AbortController();
  let running: Promise<void> | undefined;
  if (config.command) {
    const child = new ProviderProcess({
      command: config.command,
      env: { ...config.env, [ADDRESS_ENV]: address },
      logger,
    });
    running = child.run(stopProcess.signal);
  }
  const cleanup = async (): Promise<void> => {
    stopProcess.abort();
    await running;
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  };
  try {
    return await ExternalProvider.connect(
      {
        nodeName: options.nodeName,
        address,
        logger,
        ...(credentials ? { credentials } : {}),
        ...(config.callTimeoutMs !== undefined ? { callTimeoutMs: config.callTimeoutMs } : {}),
        ...(options.agentVersion !== undefined ? { agentVersion: options.agentVersion } : {}),
        onClose: cleanup,
      },
      AbortSignal.timeout(config.connectTimeoutMs ?? 30_000),
    );
  } catch (err) {
    await cleanup();
    throw err;
  }
}
