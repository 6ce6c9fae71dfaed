/**
 * Redis CPU per acquire+release pair, from `INFO commandstats` (usec spent in FCALL and the
 * commands it ran), on a dedicated redis-server: `npm run lua-cost -w bench`. Two shapes: one
 * caller with nothing else in flight (uncontended), and 16 callers over a limit of 4 (every
 * release pumps a queued waiter).
 */
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { DATASETS_KEY, createLimiter } from '@tollgate/limiter';
import { Redis } from 'ioredis';

const PAIRS = Number(process.env.PAIRS ?? 20_000);

interface Shape {
  label: string;
  callers: number;
  concurrency: number;
}

const SHAPES: Shape[] = [
  { label: 'uncontended (1 caller, limit 4)', callers: 1, concurrency: 4 },
  { label: 'contended (16 callers, limit 4)', callers: 16, concurrency: 4 },
];

async function fcallUsec(admin: Redis): Promise<{ usec: number; calls: number }> {
  const info = await admin.info('commandstats');
  const match = /^cmdstat_fcall:calls=(\d+),usec=(\d+)/m.exec(info);
  return { calls: Number(match?.[1] ?? 0), usec: Number(match?.[2] ?? 0) };
}

async function measure(server: RedisServerProcess, admin: Redis, shape: Shape): Promise<string> {
  const limiter = createLimiter({
    redis: server.url,
    name: uniqueName('cost'),
    concurrency: shape.concurrency,
    rates: { requests: { limit: 1e9, intervalMs: 1_000 }, outputTokens: { limit: 1e9, intervalMs: 1_000 } },
  });
  await limiter.ready();
  const pair = async () => (await limiter.acquire({ cost: { outputTokens: 10 } })).release({ used: { outputTokens: 5 } });
  for (let index = 0; index < 500; index++) await pair(); // warm-up: library loaded, caches filled
  await admin.config('RESETSTAT');
  let left = PAIRS;
  await Promise.all(
    Array.from({ length: shape.callers }, async () => {
      while (left-- > 0) await pair();
    }),
  );
  const { usec, calls } = await fcallUsec(admin);
  await limiter.close();
  return `| ${shape.label} | ${PAIRS} | ${(calls / PAIRS).toFixed(2)} | ${(usec / PAIRS).toFixed(1)} |`;
}

const server = await RedisServerProcess.start();
const admin = new Redis(server.url);
await admin.set(DATASETS_KEY, 'bench'); // a database that has not lost its data: no first-boot grace pause
try {
  console.log('| shape | pairs | FCALLs per pair | Redis µs per pair (FCALL) |');
  console.log('|---|---|---|---|');
  for (const shape of SHAPES) console.log(await measure(server, admin, shape));
} finally {
  admin.disconnect();
  await server.close();
}
