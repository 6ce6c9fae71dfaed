import { startRedis, type TestRedis } from '@tollgate/test-support';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { POOLS, runPoolsDemo, type PoolsResult } from '../../scripts/demo/pools.js';
import { startWithEnv } from '../support/fleet.js';
import { MOCK_ENTRY, stopAllServices, type ServiceProcess } from '../support/processes.js';

/**
 * `npm run demo -- --pools` (issue 13, "how it is shown"): the second demo's three configurations against the mock
 * as a process, with shorter phases. What it shows must hold: the two pools deliver each pool's binding limit with 0
 * 429s; one bucket set at Sonnet's limits wastes both pools' headroom; at Haiku's it overruns Sonnet's pool.
 */
const PHASE_MS = 6_000;
const plain = (text: string | number) => String(text);

let redis: TestRedis;
let mock: ServiceProcess;

beforeAll(async () => {
  redis = await startRedis();
  mock = await startWithEnv('mock-anthropic', MOCK_ENTRY, { PORT: '0', LOG_LEVEL: 'warn' });
});
afterAll(async () => {
  await stopAllServices();
  await redis?.close();
});

describe('npm run demo -- --pools', () => {
  it('two pools: each pool at ≥ 90% of its binding limit, 0 429s; one bucket set: ≤ 60% of both (Sonnet-sized) or 429s (Haiku-sized)', async () => {
    const results = await runPoolsDemo({
      redisUrl: redis.url,
      mockUrl: mock.ready.url ?? '',
      run: `demo-test-${Date.now().toString(36)}`,
      style: { bold: plain, dim: plain, green: plain, red: plain },
      tty: false,
      phaseMs: PHASE_MS,
    });
    const [twoPools, sonnetSized, haikuSized] = results as [PoolsResult, PoolsResult, PoolsResult];
    // Sonnet's calls are ITPM-bound, Haiku's OTPM-bound
    const binding = (result: PoolsResult) => ({
      sonnet: result.perPool.sonnet.perMinute.itpm / POOLS.sonnet.itpm,
      haiku: result.perPool.haiku.perMinute.otpm / POOLS.haiku.otpm,
    });
    expect(twoPools.rateLimited).toBe(0);
    expect(twoPools.failed).toBe(0);
    expect(binding(twoPools).sonnet).toBeGreaterThanOrEqual(0.9);
    expect(binding(twoPools).haiku).toBeGreaterThanOrEqual(0.9);
    expect(binding(twoPools).sonnet).toBeLessThanOrEqual(1.05);
    expect(binding(twoPools).haiku).toBeLessThanOrEqual(1.05);
    expect(sonnetSized.rateLimited).toBe(0);
    expect(binding(sonnetSized).sonnet).toBeLessThanOrEqual(0.6);
    expect(binding(sonnetSized).haiku).toBeLessThanOrEqual(0.6);
    expect(haikuSized.perPool.sonnet.rateLimited).toBeGreaterThan(0);
    expect(haikuSized.perPool.haiku.rateLimited).toBe(0);
  });
});
