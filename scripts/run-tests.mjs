// `npm test`: every workspace's tests, one workspace at a time (timing-sensitive cross-process
// tests share 2 cores badly), then one total line counted from each workspace's vitest JSON report.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const workspaces = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).workspaces;
const reports = [];
for (const pattern of workspaces) {
  const base = pattern.replace(/\/\*$/, '');
  const dirs = pattern.endsWith('/*')
    ? spawnSync('ls', [join(root, base)], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map((name) => join(root, base, name))
    : [join(root, base)];
  for (const dir of dirs) {
    const report = join(dir, 'test-output', 'vitest.json');
    rmSync(report, { force: true });
    reports.push(report);
  }
}

const turbo = spawnSync('npx', ['turbo', 'run', 'test', '--concurrency=1', '--continue', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit' });

let passed = 0;
let failed = 0;
let skipped = 0;
for (const report of reports) {
  if (!existsSync(report)) continue;
  const result = JSON.parse(readFileSync(report, 'utf8'));
  passed += result.numPassedTests;
  failed += result.numFailedTests;
  skipped += result.numPendingTests + result.numTodoTests;
}
console.log(`\ntotal: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(turbo.status ?? 1);
