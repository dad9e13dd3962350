/**
 * Image pull secrets: the registry credentials in a `kubernetes.io/dockerconfigjson` or
 * `kubernetes.io/dockercfg` Secret, read as the kubelet reads them for `spec.imagePullSecrets`.
 *
 * - `kubernetes.io/dockerconfigjson`: key `.dockerconfigjson`, `{"auths": {REGISTRY: ENTRY}}`;
 * - `kubernetes.io/dockercfg`: key `.dockercfg`, `{REGISTRY: ENTRY}`;
 * - ENTRY: `username`, `password`, `auth` (base64 of `username:password`, which gives both
 *   when the entry has neither), `identitytoken`, `registrytoken`; other fields (`email`) are
 *   ignored.
 *
 * Errors name the Secret and what is wrong with it, never a value: the content is secret.
 */
import { Buffer } from 'node:buffer';
import type { RegistryCredential } from '../provider.js';
import type { V1Secret } from '../wire.js';

/** Why a pull secret gave no credentials. */
export type PullSecretProblem = 'WrongType' | 'MissingKey' | 'Malformed';

/** A Secret that cannot serve as an image pull secret; the message never quotes its content. */
export class PullSecretError extends Error {
  override readonly name = 'PullSecretError';
  readonly problem: PullSecretProblem;
  constructor(problem: PullSecretProblem, message: string) {
    super(message);
    this.problem = problem;
  }
}

const DOCKER_CONFIG_JSON = 'kubernetes.io/dockerconfigjson';
const DOCKER_CFG = 'kubernetes.io/dockercfg';

/** The data key that holds the config, by secret type. */
const KEY_OF: Readonly<Record<string, string>> = {
  [DOCKER_CONFIG_JSON]: '.dockerconfigjson',
  [DOCKER_CFG]: '.dockercfg',
};

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The credentials of one image pull secret, one per registry entry in the order of the
 * config. Throws {@link PullSecretError} when the Secret is of another type, lacks its key or
 * its content is not a docker config.
 */
export function parsePullSecret(secret: V1Secret): RegistryCredential[] {
  const name = secret.metadata?.name ?? '';
  const type = secret.type ?? '';
  const key = KEY_OF[type];
  if (key === undefined)
    throw new PullSecretError(
      'WrongType',
      `secret "${name}" is of type "${type}", not ${DOCKER_CONFIG_JSON} or ${DOCKER_CFG}`,
    );
  const data = secret.data?.[key];
  if (data === undefined || data === '')
    throw new PullSecretError('MissingKey', `secret "${name}" has no ${key}`);
  let config: unknown;
  try {
    config = JSON.parse(Buffer.from(data, 'base64').toString('utf8'));
  } catch {
    // JSON.parse's message quotes the text: it is not passed on.
    throw new PullSecretError('Malformed', `the ${key} of secret "${name}" is not valid JSON`);
  }
  const auths = type === DOCKER_CONFIG_JSON && isObject(config) ? config.auths : config;
  if (!isObject(auths))
    throw new PullSecretError(
      'Malformed',
      type === DOCKER_CONFIG_JSON
        ? `the ${key} of secret "${name}" has no "auths" object`
        : `the ${key} of secret "${name}" is not an object of registries`,
    );
  return Object.entries(auths).map(([registry, entry]) => {
    if (!isObject(entry))
      throw new PullSecretError(
        'Malformed',
        `the entry of registry "${registry}" in secret "${name}" is not an object`,
      );
    return credentialOf(registry, entry, name);
  });
}

function credentialOf(
  registry: string,
  entry: Record<string, unknown>,
  secretName: string,
): RegistryCredential {
  const field = (f: string): string | undefined => {
    const v = entry[f];
    if (v === undefined || v === null || v === '') return undefined;
    if (typeof v !== 'string')
      throw new PullSecretError(
        'Malformed',
        `field "${f}" of registry "${registry}" in secret "${secretName}" is not a string`,
      );
    return v;
  };
  let username = field('username');
  let password = field('password');
  const auth = field('auth');
  if (auth !== undefined && username === undefined && password === undefined) {
    const decoded = Buffer.from(auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon > 0) {
      username = decoded.slice(0, colon);
      password = decoded.slice(colon + 1);
    }
  }
  const identityToken = field('identitytoken');
  const registryToken = field('registrytoken');
  return {
    registry,
    ...(username === undefined ? {} : { username }),
    ...(password === undefined || password === '' ? {} : { password }),
    ...(auth === undefined ? {} : { auth }),
    ...(identityToken === undefined ? {} : { identityToken }),
    ...(registryToken === undefined ? {} : { registryToken }),
  };
}
