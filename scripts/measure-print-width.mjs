// Counts the lines prettier would change in the tracked sources at each printWidth given (nothing is written):
// `node scripts/measure-print-width.mjs 120 140 180 200`. How the width in .prettierrc.json was chosen.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import * as prettier from 'prettier';
const files = execFileSync('git', ['ls-files', '*.ts', '*.mjs', '*.cjs', '*.js', '*.mts', '*.cts'], { encoding: 'utf8' }).trim().split('\n');
const { printWidth: _chosen, ...base } = JSON.parse(readFileSync(new URL('../.prettierrc.json', import.meta.url), 'utf8'));
function changed(a, b) {
  // lines of a not in b (multiset), a cheap stand-in for a diff's removed lines
  const counts = new Map();
  for (const line of b.split('\n')) counts.set(line, (counts.get(line) ?? 0) + 1);
  let removed = 0;
  for (const line of a.split('\n')) {
    const c = counts.get(line) ?? 0;
    if (c > 0) counts.set(line, c - 1);
    else removed++;
  }
  return removed;
}
for (const printWidth of process.argv.slice(2).map(Number)) {
  let total = 0,
    touched = 0;
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    const out = await prettier.format(text, { ...base, printWidth, filepath: file });
    const n = changed(text, out);
    total += n;
    if (n > 0) touched++;
  }
  console.log(`printWidth ${printWidth}: ${total} lines changed in ${touched}/${files.length} files`);
}
