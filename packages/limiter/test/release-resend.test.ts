/**
 * A release that fails on a connection that stays up (Redis refuses it, a Redis Cluster slot moved, a timeout with no
 * disconnect) is sent again by the next heartbeat Redis answers, not only after a reconnect that may never come: the
 * permit is back well before its lease would expire. Redis refuses here through an ACL that denies FCALL for a while.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { limiterKeys } from '../src/index.js';
import { until, useDebugRedis } from './support.js';

const fixture = useDebugRedis();
const LEASE_TTL_MS = 4_000;
const HEARTBEAT_MS = 200;

describe('a release Redis refused, on a connection that stays up', () => {
  it('is sent again by the next heartbeat Redis answers: the permit is back long before its lease expires', async () => {
    const user = uniqueName('limiter-user').replace(/[^A-Za-z0-9-]/g, '');
    await fixture.admin.call('ACL', 'SETUSER', user, 'on', '>secret', '~*', '&*', '+@all');
    const url = new URL(fixture.redis.url);
    url.username = user;
    url.password = 'secret';
    const name = uniqueName('release-resend');
    const limiter = await fixture.limiter({ redis: url.toString(), name, concurrency: 2, leaseTtlMs: LEASE_TTL_MS, heartbeatMs: HEARTBEAT_MS });
    const permit = await limiter.acquire();
    await fixture.admin.call('ACL', 'SETUSER', user, '-fcall'); // the release (and the heartbeats) are refused: NOPERM
    const released = await permit.release().then(
      () => 'released',
      (error: Error) => error.name,
    );
    expect(released).toBe('LimiterUnavailableError');
    expect(await fixture.admin.zcard(limiterKeys(name).leases)).toBe(1);
    await sleep(2 * HEARTBEAT_MS);
    await fixture.admin.call('ACL', 'SETUSER', user, '+fcall');
    const allowedAt = performance.now();
    expect(await until(async () => (await fixture.admin.zcard(limiterKeys(name).leases)) === 0, LEASE_TTL_MS)).toBe(true);
    expect(performance.now() - allowedAt).toBeLessThan(LEASE_TTL_MS / 2); // a heartbeat sent it, not the lease's expiry
    await fixture.admin.call('ACL', 'DELUSER', user);
  });
});
