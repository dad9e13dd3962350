import { createPrivateKey, createPublicKey, webcrypto } from 'node:crypto';

/** The key types certificates here are made with. EC P-256 unless something needs RSA. */
export type KeyAlgorithm = 'ec-p256' | 'rsa-2048';

/** A WebCrypto key pair, extractable so it can be written out as PEM. */
export interface KeyPair {
  readonly algorithm: KeyAlgorithm;
  readonly privateKey: webcrypto.CryptoKey;
  readonly publicKey: webcrypto.CryptoKey;
}

const { subtle } = webcrypto;

const IMPORT = {
  'ec-p256': { name: 'ECDSA', namedCurve: 'P-256' },
  'rsa-2048': { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' },
} as const;

/** The signature algorithm a key of this type signs certificates and requests with. */
export function signingAlgorithm(
  algorithm: KeyAlgorithm,
): webcrypto.EcdsaParams | webcrypto.Algorithm {
  return algorithm === 'ec-p256'
    ? { name: 'ECDSA', hash: 'SHA-256' }
    : { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
}

/** A new key pair. Default: EC P-256. */
export async function generateKeyPair(algorithm: KeyAlgorithm = 'ec-p256'): Promise<KeyPair> {
  const params =
    algorithm === 'ec-p256'
      ? IMPORT['ec-p256']
      : { ...IMPORT['rsa-2048'], modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]) };
  const pair = await subtle.generateKey(params, true, ['sign', 'verify']);
  return { algorithm, privateKey: pair.privateKey, publicKey: pair.publicKey };
}

/** The private key as PKCS #8 PEM (`BEGIN PRIVATE KEY`), which Go, OpenSSL and Node all read. */
export async function privateKeyToPem(keys: KeyPair): Promise<string> {
  return toPem('PRIVATE KEY', await subtle.exportKey('pkcs8', keys.privateKey));
}

/** The public key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`). */
export async function publicKeyToPem(keys: KeyPair): Promise<string> {
  return toPem('PUBLIC KEY', await subtle.exportKey('spki', keys.publicKey));
}

/**
 * Reads a private key in any PEM form OpenSSL writes (PKCS #8, SEC 1 `EC PRIVATE KEY`, PKCS #1
 * `RSA PRIVATE KEY`) and derives its public half. Throws on other key types (only EC P-256 and
 * RSA are used here) and on text that is not a key.
 */
export async function keyPairFromPem(pem: string | Buffer): Promise<KeyPair> {
  const key = createPrivateKey(pem);
  let algorithm: KeyAlgorithm;
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1')
    algorithm = 'ec-p256';
  else if (key.asymmetricKeyType === 'rsa') algorithm = 'rsa-2048';
  else
    throw new TypeError(
      `unsupported private key type ${key.asymmetricKeyType ?? 'unknown'}${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ''}: EC P-256 or RSA expected`,
    );
  const params = IMPORT[algorithm];
  const [privateKey, publicKey] = await Promise.all([
    subtle.importKey('pkcs8', key.export({ type: 'pkcs8', format: 'der' }), params, true, ['sign']),
    subtle.importKey(
      'spki',
      createPublicKey(key).export({ type: 'spki', format: 'der' }),
      params,
      true,
      ['verify'],
    ),
  ]);
  return { algorithm, privateKey, publicKey };
}

/** PEM armour: base64 in 64-character lines between BEGIN and END lines. */
export function toPem(label: string, der: ArrayBuffer | Uint8Array): string {
  const b64 = Buffer.from(der instanceof ArrayBuffer ? new Uint8Array(der) : der).toString(
    'base64',
  );
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * The DER bodies of the PEM blocks labelled `label` in `text`, in order. Text around the blocks
 * (comments, other labels) is ignored.
 */
export function fromPem(label: string, text: string): Buffer[] {
  const re = new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]*?)-----END ${label}-----`, 'g');
  return [...text.matchAll(re)].map((m) => Buffer.from((m[1] ?? '').replace(/\s+/g, ''), 'base64'));
}
