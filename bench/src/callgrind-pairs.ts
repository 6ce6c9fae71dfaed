/**
 * Instructions Redis executes per acquire+release pair, this checkout's limiter against a baseline
 * checkout's, counted by callgrind (repeatable under load, unlike timings):
 * `npm run callgrind-pairs -w bench -- --baseline-limiter DIR [--pairs N] [--rounds R] [--shape 1x16]`.
 * Starts `valgrind --tool=callgrind redis-server` with instrumentation off, and per run (baseline and
 * new interleaved, A B B A …): warm-up, zero the counters, instrumentation on, N pairs, off, dump.
 * Prints Ir per pair of the whole server and of FCALL (inclusive) per run, the commands Redis ran per
 * pair in the counted part (`INFO commandstats`, FCALL's inner commands included), and each run's dump
 * file for `callgrind_annotate`.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { DATASETS_KEY } from '@tollgate/limiter';
import { freePort, uniqueName } from '@tollgate/test-support';
import { BASELINE_LIMITER_ENV, loadBaseline, loadTollgate } from './contenders.js';
import { commandsExecuted, redisCommandStats, resetRedisStats } from './redis-stats.js';

const { values } = parseArgs({
  options: {
    'baseline-limiter': { type: 'string' },
    pairs: { type: 'string', default: '2000' },
    rounds: { type: 'string', default: '2' },
    shape: { type: 'string', default: '1x16' },
    limit: { type: 'string', default: '10' },
  },
});
if (values['baseline-limiter'] !== undefined) process.env[BASELINE_LIMITER_ENV] = values['baseline-limiter'];
const PAIRS = Number(values.pairs);
const ROUNDS = Number(values.rounds);
const [CLIENTS, CALLERS] = values.shape.split('x').map(Number) as [number, number];
const LIMIT = Number(values.limit);
const PORT = await freePort();
/** The limiters' redisTimeoutMs against the valgrind'ed server (the longest the options allow). */
const VALGRIND_REDIS_TIMEOUT_MS = 60_000;

const current = await loadTollgate();
const baseline = await loadBaseline();
if ('error' in current) throw new Error(current.error);
if ('error' in baseline) throw new Error(baseline.error);
type CreateLimiter = typeof current.createLimiter;

const dir = mkdtempSync(join(tmpdir(), 'callgrind-pairs-'));
const server = spawn(
  'valgrind',
  [
    '--tool=callgrind',
    '--instr-atstart=no',
    `--callgrind-out-file=${join(dir, 'callgrind.out')}`,
    'redis-server',
    '--port',
    String(PORT),
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
  ],
  { stdio: 'ignore' },
);
const control = (...args: string[]): void => {
  execFileSync('callgrind_control', [...args, String(server.pid)], { stdio: 'ignore' });
};
process.on('exit', () => server.kill('SIGTERM'));
const url = `redis://127.0.0.1:${PORT}`;
const admin = new Redis(url, { retryStrategy: () => 200, maxRetriesPerRequest: null });
admin.on('error', () => {}); // refused until valgrind has started the server: retried
await admin.set(DATASETS_KEY, 'bench');

/** A run's commands per pair: in all, and each command's (most first). */
interface Commands {
  perPair: number;
  each: string;
}

async function run(createLimiter: CreateLimiter, label: string): Promise<Commands> {
  const name = uniqueName('cg');
  // a lease far longer than a run: no heartbeat (nor lease expiry) inside the counted part; valgrind runs Redis tens of
  // times slower, and the machine is shared: a call may take seconds, which is no failure here
  const limiters = Array.from({ length: CLIENTS }, () =>
    createLimiter({ redis: url, name, concurrency: LIMIT, leaseTtlMs: 600_000, heartbeatMs: 300_000, redisTimeoutMs: VALGRIND_REDIS_TIMEOUT_MS }),
  );
  await Promise.all(limiters.map((limiter) => limiter.ready()));
  const pair = async (limiter: (typeof limiters)[number]) => (await limiter.acquire({ timeoutMs: 600_000 })).release();
  const drive = async (count: number) => {
    let left = count;
    await Promise.all(
      limiters.flatMap((limiter) =>
        Array.from({ length: CALLERS }, async () => {
          while (left-- > 0) await pair(limiter);
        }),
      ),
    );
  };
  await drive(300); // warm-up: the config cache, the JIT of the client
  await resetRedisStats(admin);
  control('--zero');
  control('--instr=on');
  await drive(PAIRS);
  control('--instr=off');
  control(`--dump=${label}`);
  const stats = await redisCommandStats(admin);
  await Promise.all(limiters.map((limiter) => limiter.close()));
  const each = [...stats]
    .sort((a, b) => b[1].calls - a[1].calls)
    .map(([command, stat]) => `${command} ${(stat.calls / PAIRS).toFixed(2)}`)
    .join(', ');
  return { perPair: commandsExecuted(stats) / PAIRS, each };
}

function totals(file: string): { total: number; fcall: number } {
  const output = execFileSync('callgrind_annotate', ['--inclusive=yes', '--threshold=100', file], { encoding: 'utf8', maxBuffer: 64 << 20 });
  const number = (text: string): number => Number(text.replace(/,/g, ''));
  const total = number(/^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS/m.exec(output)?.[1] ?? 'NaN');
  const fcall = number(/^\s*([\d,]+) \([^)]*\)\s+\S*:fcallCommand /m.exec(output)?.[1] ?? 'NaN');
  return { total, fcall };
}

const results: Record<'baseline' | 'new', Array<{ total: number; fcall: number; file: string; commands: Commands }>> = { baseline: [], new: [] };
try {
  let index = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? (['baseline', 'new'] as const) : (['new', 'baseline'] as const);
    for (const which of order) {
      const label = `${which}-${++index}`;
      const commands = await run(which === 'new' ? current.createLimiter : baseline.createLimiter, label);
      await new Promise((resolve) => setTimeout(resolve, 500));
      const file = readdirSync(dir)
        .filter((entry) => entry.startsWith('callgrind.out'))
        .map((entry) => join(dir, entry))
        .find((path) => readFileSync(path, 'utf8').includes(`\ndesc: Trigger: dump ${label}\n`));
      if (file === undefined) throw new Error(`no dump for ${label} in ${dir}`);
      results[which].push({ ...totals(file), file, commands });
    }
  }
} finally {
  admin.disconnect();
  server.kill('SIGTERM');
}
console.log(`shape ${CLIENTS}×${CALLERS}, limit ${LIMIT}, ${PAIRS} pairs per run, ${ROUNDS} rounds; Ir per pair`);
for (const which of ['baseline', 'new'] as const) {
  for (const run of results[which])
    console.log(
      `${which.padEnd(8)} total ${(run.total / PAIRS).toFixed(0).padStart(8)}  fcall ${(run.fcall / PAIRS).toFixed(0).padStart(8)}  ` +
        `commands ${run.commands.perPair.toFixed(2)} (${run.commands.each})  ${run.file}`,
    );
}
