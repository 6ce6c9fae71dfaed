import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Issue 17: guarantees you can find. The G1–G10 tables of docs/DESIGN.md and the README name, for each guarantee, the
 * files that implement it and the tests that prove it (`path` "title"). This checks every file exists, every title
 * is the title of a test (or describe block) in its file, and every such title starts with the guarantee it proves.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TABLES = ['docs/DESIGN.md', 'README.md'] as const;
const GUARANTEES = Array.from({ length: 10 }, (_, i) => `G${i + 1}`);
/** A test declaration right before a title: it, test (with a modifier such as only), describe, or it.each(…). */
const DECLARATION = /\b(?:it|test|describe)(?:\.(?:only|skip|concurrent|sequential))?\(\s*$/;
const EACH_DECLARATION = /\b(?:it|test|describe)\.each\(/;
/** How far back an `it.each(` may be from its title (its table of cases). */
const EACH_LOOKBACK_CHARS = 2_000;

interface Row {
  guarantee: string;
  implementedIn: string[];
  testedBy: Array<{ file: string; title: string }>;
}

function rows(table: string): Row[] {
  const text = readFileSync(join(ROOT, table), 'utf8');
  return text
    .split('\n')
    .filter((line) => /^\| G\d+ \|/.test(line))
    .map((line) => {
      const cells = line.split(' | ');
      const implemented = cells.at(-2) ?? '';
      const tested = cells.at(-1) ?? '';
      return {
        guarantee: (/^\| (G\d+)/.exec(line) ?? [])[1] ?? '',
        implementedIn: [...implemented.matchAll(/`([^`]+)`/g)].map((match) => match[1] ?? ''),
        testedBy: [...tested.matchAll(/`([^`]+)` "([^"]+)"/g)].map((match) => ({ file: match[1] ?? '', title: match[2] ?? '' })),
      };
    });
}

/** Whether `title` is the title of a test or describe block in `source`, quoted any way. */
function declaresTest(source: string, title: string): boolean {
  for (const quote of ["'", '"', '`']) {
    const literal = `${quote}${title}${quote}`;
    for (let at = source.indexOf(literal); at !== -1; at = source.indexOf(literal, at + 1)) {
      const before = source.slice(Math.max(0, at - EACH_LOOKBACK_CHARS), at);
      if (DECLARATION.test(before)) return true;
      if (/\)\s*\(\s*$/.test(before) && EACH_DECLARATION.test(before)) return true;
    }
  }
  return false;
}

describe.each(TABLES)('the guarantees table of %s', (table) => {
  const found = rows(table);

  it('has one row per guarantee, G1 to G10, each naming at least one file and one test', () => {
    expect(found.map((row) => row.guarantee)).toEqual(GUARANTEES);
    for (const row of found) {
      expect(row.implementedIn.length, `${row.guarantee} implemented in`).toBeGreaterThan(0);
      expect(row.testedBy.length, `${row.guarantee} tested by`).toBeGreaterThan(0);
    }
  });

  it('names files that exist', () => {
    const missing = found.flatMap((row) =>
      [...row.implementedIn, ...row.testedBy.map((test) => test.file)].filter((file) => !existsSync(join(ROOT, file))).map((file) => `${row.guarantee}: ${file}`),
    );
    expect(missing).toEqual([]);
  });

  it('names tests that are in those files, each titled with the guarantee it proves', () => {
    const problems: string[] = [];
    for (const row of found) {
      for (const { file, title } of row.testedBy) {
        const path = join(ROOT, file);
        if (!existsSync(path)) continue; // reported above
        if (!declaresTest(readFileSync(path, 'utf8'), title)) problems.push(`${row.guarantee}: no test "${title}" in ${file}`);
        const prefix = /^(G\d+(?:, G\d+)*): /.exec(title)?.[1]?.split(', ') ?? [];
        if (!prefix.includes(row.guarantee)) problems.push(`${row.guarantee}: "${title}" does not start with ${row.guarantee}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe('declaresTest', () => {
  it('finds it(), describe() and it.each(…)() titles, and nothing else', () => {
    expect(declaresTest("it('G1: a', () => {})", 'G1: a')).toBe(true);
    expect(declaresTest('describe("G2: b", () => {})', 'G2: b')).toBe(true);
    expect(declaresTest("it.each([\n  ['x', 1],\n] as const)('G3: %s', () => {})", 'G3: %s')).toBe(true);
    expect(declaresTest("const note = 'G1: a';", 'G1: a')).toBe(false);
    expect(declaresTest("it('G1: a longer title', () => {})", 'G1: a')).toBe(false);
  });
});
