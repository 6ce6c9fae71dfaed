import type { Limiter, Permit } from '@tollgate/limiter';
import { startRedis, type TestRedis } from '@tollgate/test-support';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AdaptiveConcurrency } from '../src/adaptive.js';
import { limiterFor } from './support.js';

/**
 * Issue 12, also: adaptive raise and decrease racing each other. A 429 and clean calls that end together, on permits
 * granted before the decrease, must not undo the decrease: those calls ran under the old, higher limit.
 */

const CONFIGURED = 8;
const SETTINGS = { decreaseFactor: 0.75, raiseAfterCleanCalls: 1 };

let redis: TestRedis;
let limiter: Limiter;
let held: Permit[];

beforeAll(async () => {
  redis = await startRedis();
});
afterEach(async () => {
  await Promise.all(held.map((permit) => permit.release()));
  await limiter.close();
});
afterAll(() => redis.close());

async function grant(adaptive: AdaptiveConcurrency, count: number): Promise<Permit[]> {
  const permits: Permit[] = [];
  for (let index = 0; index < count; index += 1) {
    const permit = await limiter.acquire();
    adaptive.granted(permit.fence);
    permits.push(permit);
  }
  held.push(...permits);
  return permits;
}

describe('adaptive concurrency: raises never undo a newer decrease', () => {
  it('two concurrency 429s and two clean calls of the same wave, all at once: one decrease, no raise', async () => {
    limiter = await limiterFor(redis.url, { concurrency: CONFIGURED });
    held = [];
    const adaptive = new AdaptiveConcurrency(limiter, SETTINGS, undefined);
    const [early1, early2, limited1, limited2] = await grant(adaptive, 4);
    if (early1 === undefined || early2 === undefined || limited1 === undefined || limited2 === undefined) throw new Error('four permits expected');
    await Promise.all([adaptive.limited(limited1.fence), adaptive.clean(true, early1.fence), adaptive.limited(limited2.fence), adaptive.clean(true, early2.fence)]);
    expect(adaptive.decreases).toBe(1);
    expect(adaptive.raises).toBe(0);
    expect((await limiter.snapshot()).concurrency).toBe(Math.floor(CONFIGURED * SETTINGS.decreaseFactor));
  });

  it('a clean call admitted after the decrease raises again; a 429 in flight cancels a raise decided before it', async () => {
    limiter = await limiterFor(redis.url, { concurrency: CONFIGURED });
    held = [];
    const adaptive = new AdaptiveConcurrency(limiter, SETTINGS, undefined);
    const [first] = await grant(adaptive, 1);
    if (first === undefined) throw new Error('a permit expected');
    await adaptive.limited(first.fence);
    const lowered = Math.floor(CONFIGURED * SETTINGS.decreaseFactor);
    expect((await limiter.snapshot()).concurrency).toBe(lowered);

    const [late] = await grant(adaptive, 1);
    if (late === undefined) throw new Error('a permit expected');
    await adaptive.clean(true, late.fence);
    expect(adaptive.raises).toBe(1);
    expect((await limiter.snapshot()).concurrency).toBe(lowered + 1);

    // a raise decided by one call and a 429 seen right after it on a newer permit: the decrease wins
    const [cleanOne, limitedOne] = await grant(adaptive, 2);
    if (cleanOne === undefined || limitedOne === undefined) throw new Error('two permits expected');
    const raise = adaptive.clean(true, cleanOne.fence);
    const decrease = adaptive.limited(limitedOne.fence);
    await Promise.all([raise, decrease]);
    expect(adaptive.raises).toBe(1);
    expect(adaptive.decreases).toBe(2);
    expect((await limiter.snapshot()).concurrency).toBe(Math.floor((lowered + 1) * SETTINGS.decreaseFactor));
  });
});
