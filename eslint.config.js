import eslint from '@eslint/js';
import { readdirSync, readFileSync } from 'node:fs';
import { posix } from 'node:path';
import tseslint from 'typescript-eslint';

const RULES_FILE = 'architecture.rooms.json';

/**
 * The rooms of src/ and the imports each may make, from architecture.rooms.json, as one
 * `@typescript-eslint/no-restricted-imports` block per folder (a relative import reads differently
 * from each folder). Every import that is not allowed fails lint with the rule's reason.
 */
function roomRules(root) {
  const { rooms } = JSON.parse(readFileSync(`${root}/${RULES_FILE}`, 'utf8'));
  const names = Object.keys(rooms);
  for (const [name, room] of Object.entries(rooms)) {
    for (const other of [...room.may, ...(room.mayTypes ?? []), ...Object.keys(room.never)]) {
      if (other !== '*' && !names.includes(other))
        throw new Error(`${RULES_FILE}: room ${name} names an unknown room ${other}`);
    }
  }
  const list = (dir) => {
    try {
      return readdirSync(`${root}/${dir}`, { withFileTypes: true });
    } catch {
      return []; // a room whose folder does not exist yet
    }
  };
  const subfolders = (dir) =>
    list(dir)
      .filter((e) => e.isDirectory())
      .map((e) => `${dir}/${e.name}`);
  const tree = (dir) => [dir, ...subfolders(dir).flatMap(tree)];
  /** Folders that are rooms of their own: a `*` room's subfolder among them is not its instance. */
  const named = new Set(Object.values(rooms).map((r) => r.path.replace(/\/$/, '')));
  /** Each room's instances: a file, a folder, or one folder per subfolder (`src/providers/*\/`). */
  const instances = names.flatMap((name) => {
    const path = rooms[name].path;
    if (!path.endsWith('/')) return [{ name, path, file: true }];
    const dir = path.slice(0, -1);
    if (!dir.endsWith('/*')) return [{ name, path: dir, file: false }];
    return subfolders(dir.slice(0, -2))
      .filter((sub) => !named.has(sub))
      .map((sub) => ({ name, path: sub, file: false }));
  });
  const escape = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const relative = (from, to) => {
    const rel = posix.relative(from, to);
    return rel.startsWith('.') ? rel : `./${rel}`;
  };

  const blocks = [];
  for (const self of instances) {
    const room = rooms[self.name];
    const folders = self.file
      ? [posix.dirname(self.path)]
      : tree(self.path).filter((dir) => list(dir).some((e) => e.name.endsWith('.ts')));
    if (!self.file && folders.length === 0) folders.push(self.path);
    for (const dir of folders) {
      const patterns = [
        {
          regex: '(^|/)[^./][^/]*/(.+/)?\\.\\.?(/|$)|^\\./\\.|/\\./',
          message: `Write relative imports without ./ or ../ after a name, so the room rules of ${RULES_FILE} can read them.`,
        },
        {
          regex: `^(\\.\\./){${String(dir.split('/').length)}}`,
          message:
            'Code in src/ imports nothing outside src/: tests, scripts and benchmarks are not published.',
        },
        {
          regex: '^virtual-kubelet(/|$)',
          message: 'Inside the package, import the room itself, not the published entry points.',
        },
      ];
      for (const other of instances) {
        if (other.name === self.name && other.path === self.path) continue;
        if (room.may.includes(other.name)) continue;
        const typesOnly = (room.mayTypes ?? []).includes(other.name);
        const reason = room.never[other.name] ?? room.never['*'];
        const rel = relative(dir, other.file ? other.path.replace(/\.ts$/, '') : other.path);
        patterns.push({
          regex: other.file ? `^${escape(rel)}(\\.js|\\.ts)?$` : `^${escape(rel)}(/|$)`,
          caseSensitive: true,
          ...(typesOnly ? { allowTypeImports: true } : {}),
          message:
            `${self.path}${self.file ? '' : '/'} may not import ${typesOnly ? 'values from ' : ''}` +
            `${other.path}${other.file ? '' : '/'}: ${reason} (${RULES_FILE}).`,
        });
      }
      blocks.push({
        files: self.file ? [self.path] : [`${dir}/*.ts`],
        rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
      });
    }
  }
  return blocks;
}

export default tseslint.config(
  // examples/out-of-tree-provider is a package of its own: its build (tsc) checks it, in .ci/run.
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'examples/out-of-tree-provider/**'] },
  eslint.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: {
          allowDefaultProject: ['eslint.config.js', 'bin/*'],
        },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      // node:test's test() returns a promise that the runner itself awaits.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'it', 'describe', 'suite'] },
          ],
        },
      ],
      // The Kubernetes client's model "classes" are plain data; object literals are what it sends.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
      '@typescript-eslint/no-misused-spread': 'off',
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
    },
  },
  {
    // Tests read API objects whose optional fields the assertions check anyway.
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-unnecessary-condition': 'off' },
  },
  ...roomRules(import.meta.dirname),
  {
    files: ['**/*.js', 'bin/*'],
    ...tseslint.configs.disableTypeChecked,
  },
);
