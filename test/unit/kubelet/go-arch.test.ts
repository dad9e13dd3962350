import assert from 'node:assert/strict';
import { arch, endianness } from 'node:os';
import { test } from 'node:test';
import { goArch } from '../../../src/kubelet/go-arch.js';

test("Node's architecture names map to GOARCH", () => {
  const cases: [string, 'LE' | 'BE', string][] = [
    ['x64', 'LE', 'amd64'],
    ['ia32', 'LE', '386'],
    ['arm64', 'LE', 'arm64'],
    ['arm', 'LE', 'arm'],
    ['ppc64', 'LE', 'ppc64le'],
    ['ppc64', 'BE', 'ppc64'],
    ['s390x', 'BE', 's390x'],
    ['riscv64', 'LE', 'riscv64'],
    ['loong64', 'LE', 'loong64'],
    ['mipsel', 'LE', 'mipsle'],
    ['mips', 'BE', 'mips'],
    ['mips64el', 'LE', 'mips64le'],
  ];
  for (const [node, order, go] of cases) assert.equal(goArch(node, order), go, node);
});

test('the default is the host', () => {
  assert.equal(goArch(), goArch(arch(), endianness()));
});
