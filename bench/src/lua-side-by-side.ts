/**
 * Redis time per acquire+release pair, this checkout's limiter against a baseline checkout's, in one
 * run on one dedicated redis-server, interleaved (A B B A …): `npm run lua-side-by-side -w bench --
 * --baseline-limiter DIR [--pairs N] [--rounds R] [--shape 4x16]`. From `INFO commandstats`: FCALL's µs (they include
 * the commands the functions ran) and each inner command's calls per pair. Shapes: one caller
 * (uncontended), 16 callers of one process over a limit of 4 (its own grants come in the reply), and
 * 4 limiter clients × 4 callers over a limit of 4 (grants to the other clients: the hand-off path).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { DATASETS_KEY } from '@tollgate/limiter';
import { BASELINE_LIMITER_ENV, loadBaseline, loadTollgate } from './contenders.js';
import { fixed, markdownTable } from './format.js';
import { redisCommandStats, redisCpuUs, type CommandStat } from './redis-stats.js';
import { quantile } from './stats.js';

const { values } = parseArgs({
  options: { 'baseline-limiter': { type: 'string' }, pairs: { type: 'string', default: '10000' }, rounds: { type: 'string', default: '3' }, shape: { type: 'string' } },
});
if (values['baseline-limiter'] !== undefined) process.env[BASELINE_LIMITER_ENV] = values['baseline-limiter'];
const PAIRS = Number(values.pairs);
const ROUNDS = Number(values.rounds);

interface Shape {
  label: string;
  clients: number;
  callersPerClient: number;
  concurrency: number;
}

const ALL_SHAPES: Shape[] = [
  { label: '1 caller, limit 10', clients: 1, callersPerClient: 1, concurrency: 10 },
  { label: '1 client × 16 callers, limit 4', clients: 1, callersPerClient: 16, concurrency: 4 },
  { label: '4 clients × 4 callers, limit 4', clients: 4, callersPerClient: 4, concurrency: 4 },
  { label: '4 clients × 16 callers, limit 10', clients: 4, callersPerClient: 16, concurrency: 10 },
];
/** `--shape CxN`: only the shape of C clients × N callers. */
const SHAPES = values.shape === undefined ? ALL_SHAPES : ALL_SHAPES.filter((shape) => `${shape.clients}x${shape.callersPerClient}` === values.shape);

type CreateLimiter = Extract<Awaited<ReturnType<typeof loadTollgate>>, { createLimiter: unknown }>['createLimiter'];

interface Run {
  stats: Map<string, CommandStat>;
  /** Redis server CPU (user + system) per pair, µs. */
  redisCpuUs: number;
  /** This process's CPU (the limiter clients) per pair, µs. */
  clientCpuUs: number;
  pairsPerSecond: number;
}

async function measure(url: string, admin: Redis, createLimiter: CreateLimiter, shape: Shape): Promise<Run> {
  const name = uniqueName('lua');
  const limiters = Array.from({ length: shape.clients }, () => createLimiter({ redis: url, name, concurrency: shape.concurrency, leaseTtlMs: 15_000, heartbeatMs: 5_000 }));
  await Promise.all(limiters.map((limiter) => limiter.ready()));
  const pair = async (limiter: (typeof limiters)[number]) => (await limiter.acquire({ timeoutMs: 60_000 })).release();
  for (const limiter of limiters) for (let index = 0; index < 200; index++) await pair(limiter); // warm-up
  await admin.config('RESETSTAT');
  const redisBefore = await redisCpuUs(admin);
  const clientBefore = process.cpuUsage();
  const startedAt = performance.now();
  let left = PAIRS;
  await Promise.all(
    limiters.flatMap((limiter) =>
      Array.from({ length: shape.callersPerClient }, async () => {
        while (left-- > 0) await pair(limiter);
      }),
    ),
  );
  const elapsedMs = performance.now() - startedAt;
  const client = process.cpuUsage(clientBefore);
  const redisUsed = (await redisCpuUs(admin)) - redisBefore;
  const stats = await redisCommandStats(admin);
  await Promise.all(limiters.map((limiter) => limiter.close()));
  return { stats, redisCpuUs: redisUsed / PAIRS, clientCpuUs: (client.user + client.system) / PAIRS, pairsPerSecond: (PAIRS * 1000) / elapsedMs };
}

const current = await loadTollgate();
const baseline = await loadBaseline();
if ('error' in current) throw new Error(current.error);
if ('error' in baseline) throw new Error(baseline.error);
const server = await RedisServerProcess.start();
const admin = new Redis(server.url);
await admin.set(DATASETS_KEY, 'bench');
try {
  for (const shape of SHAPES) {
    const runs: Record<'baseline' | 'new', Run[]> = { baseline: [], new: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 === 0 ? (['baseline', 'new'] as const) : (['new', 'baseline'] as const);
      for (const which of order) runs[which].push(await measure(server.url, admin, which === 'new' ? current.createLimiter : baseline.createLimiter, shape));
    }
    const median = (which: 'baseline' | 'new', pick: (run: Run) => number): number => quantile(runs[which].map(pick), 0.5);
    const commands = [...new Set([...runs.baseline, ...runs.new].flatMap((run) => [...run.stats.keys()]))].sort();
    const perPair = (which: 'baseline' | 'new', command: string, pick: (stat: CommandStat) => number): number =>
      median(which, (run) => pick(run.stats.get(command) ?? { calls: 0, usec: 0 }) / PAIRS);
    const figures: Array<[string, (run: Run) => number, number]> = [
      ['pairs/s', (run) => run.pairsPerSecond, 0],
      ['FCALL µs/pair', (run) => (run.stats.get('fcall')?.usec ?? Number.NaN) / PAIRS, 1],
      ['Redis CPU µs/pair', (run) => run.redisCpuUs, 1],
      ['client CPU µs/pair', (run) => run.clientCpuUs, 1],
    ];
    console.log(`\n### ${shape.label}: ${PAIRS} pairs × ${ROUNDS} rounds (medians)\n`);
    console.log(
      markdownTable(
        ['figure', 'baseline', 'new', 'new ÷ baseline'],
        figures.map(([label, pick, digits]) => [
          label,
          fixed(median('baseline', pick), digits),
          fixed(median('new', pick), digits),
          fixed(median('new', pick) / median('baseline', pick), 2),
        ]),
      ),
    );
    console.log('');
    console.log(
      markdownTable(
        ['command', 'baseline calls/pair', 'new calls/pair', 'baseline µs/pair', 'new µs/pair'],
        commands.map((command) => [
          command,
          fixed(
            perPair('baseline', command, (stat) => stat.calls),
            2,
          ),
          fixed(
            perPair('new', command, (stat) => stat.calls),
            2,
          ),
          fixed(
            perPair('baseline', command, (stat) => stat.usec),
            2,
          ),
          fixed(
            perPair('new', command, (stat) => stat.usec),
            2,
          ),
        ]),
      ),
    );
  }
} finally {
  admin.disconnect();
  await server.close();
}
