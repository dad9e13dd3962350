/**
 * The mock's pod addresses: IPv4 addresses of a CIDR handed out per pod UID, as a CNI plugin's
 * IPAM would. Bookkeeping only: nothing listens on them and no traffic is sent to them.
 */
import { invalidInput, unavailable } from '../../errors.js';

/** The default range, the one many clusters give their pods. */
export const DEFAULT_POD_CIDR = '10.244.0.0/16';

const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function parseIPv4(text: string): number | undefined {
  const m = IPV4.exec(text);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return parts.reduce((acc, p) => acc * 256 + p, 0);
}

const formatIPv4 = (n: number): string =>
  [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

/** The usable range of an IPv4 CIDR (`a.b.c.d/p`, p from 8 to 30), or why it is not one. */
export function parsePodCIDR(cidr: string): { first: number; last: number } | string {
  const [address = '', bits = '', ...rest] = cidr.split('/');
  const base = parseIPv4(address);
  const prefix = /^\d{1,2}$/.test(bits) ? Number(bits) : NaN;
  if (rest.length > 0 || base === undefined || !(prefix >= 8 && prefix <= 30))
    return 'an IPv4 CIDR with a prefix length from 8 to 30, such as "10.244.0.0/16"';
  const size = 2 ** (32 - prefix);
  const network = base - (base % size);
  // The network address, the first host (a bridge's gateway by convention) and the broadcast
  // address are never a pod's.
  return { first: network + 2, last: network + size - 2 };
}

/**
 * Addresses by pod UID. `take` is idempotent per UID; `release` frees the address for another
 * pod. Memory grows with the pods holding an address, never with the range.
 */
export class PodAddressPool {
  readonly #first: number;
  readonly #last: number;
  readonly #byUid = new Map<string, number>();
  readonly #used = new Set<number>();
  /** Where the next search starts: addresses are reused as late as possible. */
  #cursor: number;

  /** Throws `InvalidInput` for a CIDR that {@link parsePodCIDR} refuses. */
  constructor(cidr: string) {
    const range = parsePodCIDR(cidr);
    if (typeof range === 'string') throw invalidInput(`podCIDR must be ${range}`);
    this.#first = range.first;
    this.#last = range.last;
    this.#cursor = range.first;
  }

  /** The address of `uid`, if it has one. */
  get(uid: string): string | undefined {
    const n = this.#byUid.get(uid);
    return n === undefined ? undefined : formatIPv4(n);
  }

  /** The address of `uid`, taken now if it has none. Throws `Unavailable` when all are taken. */
  take(uid: string): string {
    const known = this.get(uid);
    if (known !== undefined) return known;
    const size = this.#last - this.#first + 1;
    if (this.#used.size >= size)
      throw unavailable(`every address of the pod CIDR is taken (${String(size)} pods)`);
    let n = this.#cursor;
    while (this.#used.has(n)) n = n === this.#last ? this.#first : n + 1;
    this.#cursor = n === this.#last ? this.#first : n + 1;
    this.#used.add(n);
    this.#byUid.set(uid, n);
    return formatIPv4(n);
  }

  /** Gives `uid` the address `ip` again (a restart); ignored outside the range or when taken. */
  restore(uid: string, ip: string): void {
    const n = parseIPv4(ip);
    if (n === undefined || n < this.#first || n > this.#last) return;
    if (this.#used.has(n) || this.#byUid.has(uid)) return;
    this.#used.add(n);
    this.#byUid.set(uid, n);
  }

  /** Frees the address of `uid`; whether it had one. */
  release(uid: string): boolean {
    const n = this.#byUid.get(uid);
    if (n === undefined) return false;
    this.#byUid.delete(uid);
    this.#used.delete(n);
    return true;
  }

  /** How many pods hold an address. */
  get size(): number {
    return this.#byUid.size;
  }
}
