import { ESLint } from 'eslint';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import {
  docFile,
  readRoomRules,
  renderArchitecture,
  type RoomRules,
} from '../../scripts/architecture-doc.js';

const root = new URL('../..', import.meta.url).pathname;
const RULE = '@typescript-eslint/no-restricted-imports';

// The repository's own eslint.config.js, with only the import rule run and no type information
// (the code linted here is not a file on disk, so no TypeScript project holds it).
const eslint = new ESLint({
  cwd: root,
  overrideConfig: {
    languageOptions: { parserOptions: { projectService: false, project: null } },
  },
  ruleFilter: ({ ruleId }) => ruleId === RULE,
});

async function importErrors(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath: join(root, filePath) });
  assert.ok(result);
  assert.deepEqual(
    result.messages.filter((m) => m.ruleId !== RULE),
    [],
    'only the import rule reports',
  );
  return result.messages.map((m) => `line ${String(m.line)}: ${m.message}`);
}

test('a provider importing the pod controller fails lint with the rule reason', async () => {
  const errors = await importErrors(
    'src/providers/mock/bad.ts',
    "export { PodController } from '../../pods/pod-controller.js';\n",
  );
  assert.equal(errors.length, 1, errors.join('\n'));
  const reason = readRoomRules().rooms.providers?.never.pods;
  assert.ok(reason);
  assert.match(errors[0] ?? '', /src\/providers\/mock\/ may not import src\/pods\//);
  assert.ok(errors[0]?.includes(reason), errors[0]);
});

test('a provider may import the contract, the errors and the kubelet rules', async () => {
  const errors = await importErrors(
    'src/providers/process/probes/ok.ts',
    [
      "export type { Provider } from '../../../provider.js';",
      "export { notFound } from '../../../errors.js';",
      "export { expandEnvValue } from '../../../kubelet/env-expansion.js';",
      "export { MockConfig } from '../config.js';",
      '',
    ].join('\n'),
  );
  assert.deepEqual(errors, []);
});

test('a provider never imports another provider, kube/ or the package entry points', async () => {
  const errors = await importErrors(
    'src/providers/process/bad.ts',
    [
      "export { MockProvider } from '../mock/index.js';",
      "export { KubeClient } from '../../kube/client.js';",
      "export { providerContractSuite } from 'virtual-kubelet/testing';",
      "export { waitFor } from '../../../test/helpers/wait.js';",
      "export { PollNotifier } from '../mock/../../pods/poll-notifier.js';",
      '',
    ].join('\n'),
  );
  // The last one is read as an import of another provider, and as one not written normalized.
  assert.equal(errors.length, 6, errors.join('\n'));
  for (const [line, reason] of [
    [1, /never imports another provider/],
    [2, /never talk to the cluster they serve/],
    [3, /not the published entry points/],
    [4, /nothing outside src/],
    [5, /without \.\/ or \.\.\/ after a name/],
  ] as const) {
    const found = errors.some((e) => e.startsWith(`line ${String(line)}: `) && reason.test(e));
    assert.ok(found, `line ${String(line)}, ${String(reason)}:\n${errors.join('\n')}`);
  }
});

test('the contract names the wire types, never kube/; providers read the wire types too', async () => {
  assert.deepEqual(
    await importErrors('src/provider.ts', "export type { V1Pod } from './wire.js';\n"),
    [],
  );
  const errors = await importErrors(
    'src/provider.ts',
    "export type { KubeClient } from './kube/client.js';\n",
  );
  assert.equal(errors.length, 1);
  assert.match(errors[0] ?? '', /src\/provider\.ts may not import src\/kube\/: the contract names/);
  // The wire types are types only; a provider reads them like the contract does.
  assert.deepEqual(
    await importErrors('src/providers/mock/ok.ts', "export type { V1Pod } from '../../wire.js';\n"),
    [],
  );
});

test('leaves import nothing of ours; the core controllers do not import each other', async () => {
  const leaf = await importErrors('src/abort.ts', "export { notFound } from './errors.js';\n");
  assert.match(leaf[0] ?? '', /a leaf used by every core room/);
  const pods = await importErrors(
    'src/pods/bad.ts',
    "export { NodeController } from '../node/node-controller.js';\n",
  );
  assert.match(pods[0] ?? '', /independent; agent\/ wires them/);
  const testing = await importErrors(
    'src/testing/bad.ts',
    "export { PollNotifier } from '../pods/poll-notifier.js';\n",
  );
  assert.match(testing[0] ?? '', /with what a provider author has/);
});

function roomOf(rules: RoomRules, file: string): string | undefined {
  for (const [name, room] of Object.entries(rules.rooms)) {
    const path = room.path;
    if (path === file) return name;
    if (path.endsWith('*/')) {
      const base = path.slice(0, -2);
      if (file.startsWith(base) && file.slice(base.length).includes('/')) return name;
    } else if (path.endsWith('/') && file.startsWith(path)) return name;
  }
  return undefined;
}

test('every file of src/ is in a room, and every room names known rooms', () => {
  const rules = readRoomRules();
  const files = readdirSync(join(root, 'src'), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => relative(root, join(e.parentPath, e.name)));
  assert.ok(files.length > 50);
  assert.deepEqual(
    files.filter((f) => roomOf(rules, f) === undefined),
    [],
  );
  const names = Object.keys(rules.rooms);
  for (const [name, room] of Object.entries(rules.rooms)) {
    const named = [...room.may, ...(room.mayTypes ?? []), ...Object.keys(room.never)];
    for (const other of named) assert.ok(other === '*' || names.includes(other), other);
    for (const other of room.may) assert.ok(!(other in room.never), `${name}: ${other} both ways`);
  }
});

test('docs/architecture.md is what npm run docs:architecture writes', async () => {
  assert.equal(
    readFileSync(docFile, 'utf8'),
    await renderArchitecture(readRoomRules()),
    'run npm run docs:architecture',
  );
});
