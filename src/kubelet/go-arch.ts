/**
 * Go's GOARCH names, which a kubelet reports as `nodeInfo.architecture` and the
 * `kubernetes.io/arch` label, for Node's `process.arch` names.
 */
import { arch as hostArch, endianness as hostEndianness } from 'node:os';

/** Node's name -> GOARCH, for the names that differ or need the byte order. */
const BIG_ENDIAN: Readonly<Record<string, string>> = {
  ppc64: 'ppc64',
  mips: 'mips',
  mips64: 'mips64',
};
const LITTLE_ENDIAN: Readonly<Record<string, string>> = {
  x64: 'amd64',
  ia32: '386',
  ppc64: 'ppc64le',
  mips: 'mipsle',
  mipsel: 'mipsle',
  mips64: 'mips64le',
  mips64el: 'mips64le',
};

/**
 * The GOARCH name of a Node architecture (`process.arch`): `x64` is `amd64`, `ia32` is `386`,
 * `ppc64` on a little-endian host is `ppc64le`, `mipsel` is `mipsle`; names Go and Node share
 * (`arm64`, `arm`, `s390x`, `riscv64`, `loong64`) are returned as they are. Defaults: the host's
 * architecture and byte order.
 */
export function goArch(
  nodeArch: string = hostArch(),
  endianness: 'LE' | 'BE' = hostEndianness(),
): string {
  const table = endianness === 'BE' ? BIG_ENDIAN : LITTLE_ENDIAN;
  return table[nodeArch] ?? nodeArch;
}
