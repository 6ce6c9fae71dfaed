/**
 * `<p>:granted` holds a copy of a grant the pump made to another process than its caller, until the
 * permit is released. A release deletes that copy unless the client knows there is none (ARGV
 * maybeKept '0': the reply of its own call made the grant, for a waiter submitted once), which spares
 * the HDEL on the usual path. Whatever way a grant came, once its permit is released the hash is empty.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { limiterKeys, type Limiter, type Permit } from '../src/index.js';
import { LimiterScripts } from '../src/scripts/scripts.js';
import { useDebugRedis } from './support.js';

const fixture = useDebugRedis();

/** Long leases and heartbeats: no heartbeat runs during a test unless it asks for one. */
function limiterFor(name: string, heartbeatMs = 30_000): Promise<Limiter> {
  return fixture.limiter({ name, concurrency: 1, leaseTtlMs: 60_000, heartbeatMs });
}

/** HDELs Redis ran since the last CONFIG RESETSTAT (the commands functions run count too). */
async function hdels(): Promise<number> {
  const info = await fixture.admin.info('commandstats');
  return Number(/cmdstat_hdel:calls=(\d+)/.exec(info)?.[1] ?? 0);
}

async function keptCopies(name: string): Promise<number> {
  return fixture.admin.hlen(limiterKeys(name).granted);
}

/** One process holds the only slot, another's waiter is queued behind it. */
async function queuedBehind(name: string, waitingHeartbeatMs?: number): Promise<{ held: Permit; pending: Promise<Permit> }> {
  const holding = await limiterFor(name);
  const waiting = await limiterFor(name, waitingHeartbeatMs);
  const held = await holding.acquire();
  const pending = waiting.acquire({ timeoutMs: 10_000 });
  await expect.poll(async () => (await holding.snapshot()).waiting).toBe(1);
  return { held, pending };
}

describe('the granted hash after a release', () => {
  it("a grant in the reply of the caller's own call (its acquire, its release's pump) is released without an HDEL: nothing was kept", async () => {
    const name = uniqueName('own-grants');
    const limiter = await limiterFor(name);
    await fixture.admin.config('RESETSTAT');
    const first = await limiter.acquire(); // granted by the acquire itself
    const pending = limiter.acquire({ timeoutMs: 10_000 });
    await expect.poll(async () => (await limiter.snapshot()).waiting).toBe(1);
    await first.release(); // its pump grants the queued waiter, in this release's reply
    const second = await pending;
    await second.release();
    expect(await hdels()).toBe(0);
    expect(await keptCopies(name)).toBe(0);
  });

  it("a grant another process's pump made (by message) is kept until released, and its release deletes the copy", async () => {
    const name = uniqueName('message-grant');
    const { held, pending } = await queuedBehind(name);
    await held.release(); // grants the other process's waiter: published, and kept
    const permit = await pending;
    expect(await keptCopies(name)).toBe(1);
    await fixture.admin.config('RESETSTAT');
    await permit.release();
    expect(await hdels()).toBe(1);
    expect(await keptCopies(name)).toBe(0);
  });

  it('a grant collected by a heartbeat (its message missed) is deleted by its release', async () => {
    const name = uniqueName('collected-grant');
    const { held, pending } = await queuedBehind(name, 1_000);
    await fixture.admin.call('CLIENT', 'KILL', 'TYPE', 'pubsub'); // the grant below is published to no one
    await held.release();
    const permit = await pending; // collected by a heartbeat
    expect(await keptCopies(name)).toBe(1);
    await permit.release();
    expect(await keptCopies(name)).toBe(0);
  });

  it("a re-submission's answer may be a grant another process's pump kept: released with maybeKept, the copy goes; '0' would have left it", async () => {
    const name = uniqueName('resubmitted-grant');
    const limiter = await limiterFor(name); // configures the dataset
    const epoch = (await fixture.admin.hget(limiterKeys(name).config, 'epoch')) ?? '';
    const holder = new LimiterScripts(fixture.admin, name, limiterKeys(name), 'holder');
    const waiter = new LimiterScripts(fixture.admin, name, limiterKeys(name), 'waiter');
    const args = { priority: 5, timeoutMs: 0, previousMember: '', pool: '', group: '', step: 0, cost: {} };
    expect((await holder.acquire(epoch, { ...args, waiterId: 'holder:1' })).kind).toBe('granted');
    const queued = await waiter.acquire(epoch, { ...args, waiterId: 'waiter:1' });
    if (queued.kind !== 'queued') throw new Error(`expected queued, got ${queued.kind}`);
    await holder.release(epoch, 'holder:1', [], false); // its pump grants waiter:1: kept for the waiter
    for (const maybeKept of [false, true]) {
      const answer = await waiter.acquire(epoch, { ...args, waiterId: 'waiter:1', previousMember: queued.member });
      expect(answer.kind).toBe('granted'); // the grant made earlier, answered again
      if (answer.kind === 'granted') expect(answer.grant.direct).toBe(true); // as every acquire grant: the client also counts submissions
      expect(await keptCopies(name)).toBe(1);
      await waiter.release(epoch, 'waiter:1', [], maybeKept);
      // '0' spares the HDEL: the copy stays (which is why the client sends '1' after a re-submission)
      expect(await keptCopies(name)).toBe(maybeKept ? 0 : 1);
      if (!maybeKept) await fixture.admin.zadd(limiterKeys(name).leases, Date.now() + 60_000, 'waiter:1'); // granted again, for the second pass
    }
    expect((await limiter.snapshot()).leases).toEqual([]);
  });

  it("after a re-submission (the process was presumed dead) the client is unsure: even its own pump's grant is released with the HDEL", async () => {
    const name = uniqueName('presumed-dead');
    const limiter = await limiterFor(name, 300);
    const held = await limiter.acquire();
    const pending = limiter.acquire({ timeoutMs: 10_000 });
    await expect.poll(async () => (await limiter.snapshot()).waiting).toBe(1);
    // presumed dead: its next heartbeat answers wasAlive 0, and it submits its waiter again (still queued)
    await fixture.admin.zadd(limiterKeys(name).owners, 0, limiter.ownerId);
    await expect.poll(async () => Number(await fixture.admin.zscore(limiterKeys(name).owners, limiter.ownerId)), { timeout: 5_000 }).toBeGreaterThan(0);
    await sleep(300); // the re-submission the heartbeat's answer starts
    await fixture.admin.config('RESETSTAT');
    await held.release(); // its own pump grants the waiter, in this reply
    const permit = await pending;
    await permit.release();
    expect(await hdels()).toBe(1); // the held permit's release none (its acquire granted it); the re-submitted waiter's one
    expect(await keptCopies(name)).toBe(0);
  });
});
