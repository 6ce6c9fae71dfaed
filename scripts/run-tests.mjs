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
    ? spawnSync('ls', [join(root, base)], { encoding: 'utf8' })
        .stdout.split('\n')
        .filter(Boolean)
        .map((name) => join(root, base, name))
    : [join(root, base)];
  for (const dir of dirs) {
    const report = join(dir, 'test-output', 'vitest.json');
    rmSync(report, { force: true });
    reports.push(report);
  }
}

// every workspace built first: the tests' child processes (services, the CLI) run the compiled dist/ entries, as the
// Docker image does, instead of paying tsx's loader in each of a few hundred processes (test-support's entryCommand)
const build = spawnSync('npx', ['turbo', 'run', 'build'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
const env = { ...process.env, TOLLGATE_TEST_BUILT: '1' }; // turbo passes it on (turbo.json, globalPassThroughEnv)
const turbo = spawnSync('npx', ['turbo', 'run', 'test', '--concurrency=1', '--continue', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit', env });

let passed = 0;
let failed = 0;
let skipped = 0;
// CI logs are often read from their tail: repeat each failure there, with the first lines of its error
const failures = [];
for (const report of reports) {
  if (!existsSync(report)) continue;
  const result = JSON.parse(readFileSync(report, 'utf8'));
  passed += result.numPassedTests;
  failed += result.numFailedTests;
  skipped += result.numPendingTests + result.numTodoTests;
  for (const file of result.testResults) {
    for (const test of file.assertionResults) {
      if (test.status !== 'failed') continue;
      const message = (test.failureMessages[0] ?? '').split('\n').slice(0, 6).join('\n      ');
      failures.push(`FAILED ${file.name.slice(root.length)} > ${test.fullName}\n      ${message}`);
    }
    if (file.status === 'failed' && file.assertionResults.length === 0) failures.push(`FAILED ${file.name.slice(root.length)}\n      ${file.message}`);
  }
}
if (failures.length > 0) console.log(`\n${failures.join('\n')}`);
console.log(`\ntotal: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(turbo.status ?? 1);
