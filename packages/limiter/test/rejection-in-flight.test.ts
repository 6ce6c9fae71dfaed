/**
 * Found by the 30-minute soak (seed 1614215263, `npm run soak -- --seed 1614215263 --operations 400`): a lowered
 * capacity's rejection of a waiter reached its process (on the grants channel) while that waiter's own acquire was
 * still in its round trip. The waiter's promise was rejected before the acquire awaited it: an unhandled rejection,
 * which ended the process (Node's default), its permits held until their leases expired.
 */
import { uniqueName } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { CostExceedsCapacityError } from '../src/index.js';
import { settledWithin, until, useDebugRedis } from './support.js';

const fixture = useDebugRedis();
const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);

afterEach(() => {
  process.off('unhandledRejection', onUnhandled);
});

describe('a rejection that arrives during the rejected waiter’s own acquire', () => {
  it('rejects the acquire with CostExceedsCapacityError and is never an unhandled rejection', async () => {
    process.on('unhandledRejection', onUnhandled);
    const name = uniqueName('reject-in-flight');
    const rates = (limit: number) => ({ tokens: { limit, intervalMs: 3_600_000 } }); // no refill within the test
    const commands = new Redis(fixture.redis.url);
    try {
      const limiter = await fixture.limiter({ redis: commands, name, rates: rates(12), leaseTtlMs: 60_000, heartbeatMs: 30_000 });
      const other = await fixture.limiter({ name, rates: rates(12), leaseTtlMs: 60_000, heartbeatMs: 30_000 });
      const held = await limiter.acquire({ cost: { tokens: 12 } }); // the bucket is empty now
      const waiting = limiter.acquire({ cost: { tokens: 11 } }); // its script queues it; its reply is held back below
      commands.stream.pause(); // the reply stays unread, as on a slow network
      expect(await until(async () => (await other.snapshot()).waiting === 1)).toBe(true);
      await other.applyLimits({ rates: rates(10), leaseTtlMs: 60_000 }); // 11 can never fit 10: the pump rejects it on its owner's channel
      await new Promise((resolve) => setTimeout(resolve, 300)); // the rejection reaches the process before the reply does
      commands.stream.resume();
      const settled = await settledWithin(
        waiting.then(
          () => 'granted',
          (error: unknown) => error,
        ),
      );
      expect(settled).toBeInstanceOf(CostExceedsCapacityError);
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
      await held.release();
    } finally {
      commands.disconnect();
    }
  });
});
