/**
 * Issue 12, case 13: a release that reaches Redis twice (it timed out but ran, then was resent on
 * reconnect) settles its tokens once.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { limiterKeys, type Limiter } from '../src/index.js';
import { LimiterScripts } from '../src/scripts/scripts.js';
import { useDebugRedis } from './support.js';

/** A rate that refills too slowly to matter within a test: 1,000 tokens a day. */
const SLOW_RATE = { limit: 1_000, intervalMs: 24 * 60 * 60 * 1000 };
const REDIS_TIMEOUT_MS = 200;
/** Longer than REDIS_TIMEOUT_MS: the release's reply misses its deadline, though the script runs. */
const STALL_SECONDS = 0.6;

const fixture = useDebugRedis();

async function limiterFor(name: string): Promise<Limiter> {
  return fixture.limiter({ name, concurrency: 5, rates: { tokens: SLOW_RATE }, redisTimeoutMs: REDIS_TIMEOUT_MS, leaseTtlMs: 10_000 });
}

async function tokens(limiter: Limiter): Promise<number> {
  return (await limiter.snapshot()).buckets.tokens?.tokens ?? Number.NaN;
}

describe('a release that reaches Redis twice settles once', () => {
  it('the same release function call sent twice refunds once', async () => {
    const name = uniqueName('release-once');
    const limiter = await limiterFor(name);
    const held = await limiter.acquire({ cost: { tokens: 500 } });
    const permit = await limiter.acquire({ cost: { tokens: 300 } }); // 200 left
    const epoch = (await fixture.admin.hget(`{tollgate:${name}}:config`, 'epoch')) ?? '';
    const scripts = new LimiterScripts(fixture.admin, name, limiterKeys(name), limiter.ownerId);
    const settle = [{ dimension: 'tokens', reserved: 300, used: 0 }];
    const first = await scripts.release(epoch, permit.id, settle);
    const second = await scripts.release(epoch, permit.id, settle); // resent: its first reply was lost
    expect(first).toMatchObject({ kind: 'released', leaseWasLive: true });
    expect(second).toMatchObject({ kind: 'released', leaseWasLive: false });
    expect(Math.round(await tokens(limiter))).toBe(500); // 200 + 300 once, not 800
    await held.release();
  });

  it('a lease reclaimed after expiry still settles on its late release, once', async () => {
    const name = uniqueName('release-expired');
    const limiter = await limiterFor(name);
    const epoch = (await fixture.admin.hget(`{tollgate:${name}}:config`, 'epoch')) ?? '';
    const scripts = new LimiterScripts(fixture.admin, name, limiterKeys(name), 'frozen');
    // a lease of a process that stopped renewing it: set its expiry to now, so the next script reclaims it
    const granted = await scripts.acquire(epoch, { waiterId: 'frozen:1', priority: 5, timeoutMs: 0, previousMember: '', pool: '', group: '', step: 0, cost: { tokens: 300 } });
    expect(granted.kind).toBe('granted');
    const [seconds, micros] = (await fixture.admin.time()).map(Number);
    await fixture.admin.zadd(`{tollgate:${name}}:leases`, 'XX', (seconds ?? 0) * 1000 + Math.floor((micros ?? 0) / 1000) - 1, 'frozen:1');
    expect((await limiter.snapshot()).inFlight).toBe(0); // reclaimed
    const settle = [{ dimension: 'tokens', reserved: 300, used: 100 }];
    await scripts.release(epoch, 'frozen:1', settle);
    await scripts.release(epoch, 'frozen:1', settle);
    expect(Math.round(await tokens(limiter))).toBe(900); // 700 + (300 − 100) once, not 1,000 (capped) after twice
  });

  it('a release that timed out but ran, resent on reconnect, refunds once', async () => {
    const limiter = await limiterFor(uniqueName('release-resent'));
    const held = await limiter.acquire({ cost: { tokens: 500 } });
    const permit = await limiter.acquire({ cost: { tokens: 300 } }); // 200 left
    const stall = await fixture.redis.stall(STALL_SECONDS);
    await expect(permit.release({ used: { tokens: 0 } })).rejects.toMatchObject({ code: 'LIMITER_UNAVAILABLE' });
    await stall.woken; // the release ran after the stall: 500
    // a dropped connection: the limiter reconnects and sends again the releases it thinks were missed
    await fixture.admin.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes');
    await sleep(1_000); // the reconnect and its resends
    expect(Math.round(await tokens(limiter))).toBe(500);
    await held.release();
  });
});
