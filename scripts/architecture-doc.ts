// Writes docs/architecture.md from architecture.rooms.json, the one place where the rooms of src/
// and their allowed imports are written (eslint.config.js makes the lint rules from it too).
//
//   node --import tsx scripts/architecture-doc.ts      (npm run docs:architecture)
//
// test/unit/architecture.test.ts fails when the committed doc differs from what this writes.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';

export interface Room {
  /** `src/x.ts` (one file), `src/x/` (a folder and all under it), `src/x/*\/` (one room each). */
  readonly path: string;
  readonly what: string;
  readonly may: readonly string[];
  readonly mayTypes?: readonly string[];
  /** Room name (or `*`, any room not named) to the reason it may not be imported. */
  readonly never: Readonly<Record<string, string>>;
}

export interface RoomRules {
  readonly rooms: Readonly<Record<string, Room>>;
}

export const rulesFile = fileURLToPath(new URL('../architecture.rooms.json', import.meta.url));
export const docFile = fileURLToPath(new URL('../docs/architecture.md', import.meta.url));

export function readRoomRules(file = rulesFile): RoomRules {
  return JSON.parse(readFileSync(file, 'utf8')) as RoomRules;
}

const code = (text: string): string => `\`${text}\``;

/** The doc, as Markdown formatted as the repository's prettier config says. */
export async function renderArchitecture(rules: RoomRules): Promise<string> {
  const rooms = Object.entries(rules.rooms);
  const pathOf = (name: string): string => rules.rooms[name]?.path ?? name;
  const lines = [
    '# Architecture: rooms and their imports',
    '',
    '<!-- Written by `npm run docs:architecture` from architecture.rooms.json; do not edit. -->',
    '',
    'The code in `src/` is divided into rooms. Each room may import only the rooms listed for it',
    'below; `npm run lint` fails on any other import and prints the reason given here. The rules',
    'live in one file, `architecture.rooms.json` at the root of the repository: `eslint.config.js`',
    'makes the lint rules from it and `npm run docs:architecture` writes this page from it. A room',
    'is a file, a folder with everything under it, or (`src/providers/*/`) one room per subfolder.',
    '',
    'Relative imports are written without `./` or `../` after a name, code in `src/` imports',
    'nothing outside `src/`, and nothing in `src/` imports the published entry points',
    '(`virtual-kubelet`, `virtual-kubelet/provider`, `virtual-kubelet/testing`) of the package.',
    '',
    '| Room | Path | May import | Types only from |',
    '| --- | --- | --- | --- |',
    ...rooms.map(
      ([name, room]) =>
        `| ${name} | ${code(room.path)} | ${room.may.length === 0 ? 'nothing of ours' : room.may.join(', ')} | ${(room.mayTypes ?? []).join(', ')} |`,
    ),
    '',
  ];
  for (const [name, room] of rooms) {
    lines.push(`## ${name}: ${code(room.path)}`, '', room.what, '');
    const may = [
      ...room.may.map((other) => code(pathOf(other))),
      ...(room.mayTypes ?? []).map((other) => `${code(pathOf(other))} (types only)`),
    ];
    lines.push(`May import: ${may.length === 0 ? 'nothing of ours.' : `${may.join(', ')}.`}`, '');
    lines.push('May not import, because:', '');
    for (const [other, reason] of Object.entries(room.never)) {
      const what = other === '*' ? 'Any other room' : code(pathOf(other));
      lines.push(`- ${what}: ${reason}.`);
    }
    lines.push('');
  }
  return format(lines.join('\n'), { ...(await resolveConfig(docFile)), filepath: docFile });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(docFile, await renderArchitecture(readRoomRules()));
  process.stderr.write(`wrote ${docFile}\n`);
}
