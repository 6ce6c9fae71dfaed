/**
 * Fair share between groups (issue 15, DESIGN §9): in a limiter with `groups`, the waiters of one pool and priority
 * are served by start-time fair queuing across groups, in proportion to their weights; a group that floods delays a
 * light group by about one waiter per weight unit, not by its backlog; each group's own waiters keep their order.
 */
import { uniqueName } from '@tollgate/test-support';
import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, type Limiter } from '../src/index.js';
import { useDebugRedis } from './support.js';

const fixture = useDebugRedis();

interface Served {
  group: string;
  index: number;
}

/** Serves every waiter one at a time (concurrency 1): each grant is released as soon as it is seen. */
async function serveAll(limiters: Record<string, Limiter>, waiters: ReadonlyArray<{ group: string; via?: string }>): Promise<Served[]> {
  const first = Object.values(limiters)[0] as Limiter;
  const blocker = await first.acquire();
  const served: Served[] = [];
  const counts = new Map<string, number>();
  const done: Array<Promise<void>> = [];
  for (const { group, via } of waiters) {
    const index = counts.get(group) ?? 0;
    counts.set(group, index + 1);
    const limiter = limiters[via ?? group] ?? first;
    done.push(
      limiter.acquire({ group, timeoutMs: 60_000 }).then(async (permit) => {
        served.push({ group, index });
        await permit.release();
      }),
    );
    await expect.poll(async () => (await first.snapshot()).waiting, { interval: 5, timeout: 5_000 }).toBe(done.length);
  }
  await blocker.release();
  await Promise.all(done);
  return served;
}

const positionsOf = (served: readonly Served[], group: string) => served.flatMap((entry, position) => (entry.group === group ? [position] : []));

describe('fair share between groups', () => {
  it('a light group that arrives behind a flood is served after about one of the flood per turn, not after all of it', async () => {
    const name = uniqueName('fair-flood');
    const limiter = await fixture.limiter({ name, concurrency: 1, groups: {} });
    const served = await serveAll({ a: limiter }, [
      ...Array.from({ length: 40 }, () => ({ group: 'flood', via: 'a' })),
      ...Array.from({ length: 5 }, () => ({ group: 'light', via: 'a' })),
    ]);
    const light = positionsOf(served, 'light');
    console.log(`fair-flood: light served at positions ${light.join(', ')} of ${served.length}`);
    // alternating with the flood from the first turn on (weights 1:1): the i-th light waiter after at most i + 1 of
    // the flood's (equal tags go in member order, so a turn may swap)
    expect(light).toHaveLength(5);
    light.forEach((position, i) => expect(position).toBeLessThanOrEqual(2 * i + 2));
    // each group's own waiters in their order
    for (const group of ['flood', 'light'])
      expect(served.filter((entry) => entry.group === group).map((entry) => entry.index)).toEqual([...Array(group === 'flood' ? 40 : 5).keys()]);
  });

  it('a group that was served alone before is not held back for it: service moved the virtual time with its grants', async () => {
    const limiter = await fixture.limiter({ name: uniqueName('fair-after-alone'), concurrency: 1, groups: {} });
    await serveAll(
      { a: limiter },
      Array.from({ length: 20 }, () => ({ group: 'light', via: 'a' })),
    ); // alone: nobody to share with
    const served = await serveAll({ a: limiter }, [
      ...Array.from({ length: 40 }, () => ({ group: 'flood', via: 'a' })),
      ...Array.from({ length: 5 }, () => ({ group: 'light', via: 'a' })),
    ]);
    const light = positionsOf(served, 'light');
    console.log(`fair-after-alone: light served at positions ${light.join(', ')} of ${served.length}`);
    light.forEach((position, i) => expect(position).toBeLessThanOrEqual(2 * i + 2)); // (was: behind 20 of the flood)
  });

  it('without groups the same load is first come, first served (the control)', async () => {
    const limiter = await fixture.limiter({ name: uniqueName('fair-fifo'), concurrency: 1 });
    const served = await serveAll({ a: limiter }, [
      ...Array.from({ length: 40 }, () => ({ group: 'flood', via: 'a' })),
      ...Array.from({ length: 5 }, () => ({ group: 'light', via: 'a' })),
    ]);
    expect(positionsOf(served, 'light')).toEqual([40, 41, 42, 43, 44]);
  });

  it('weights 3:1, both backlogged, across two processes: grants 3:1 (75% / 25%)', async () => {
    const name = uniqueName('fair-weights');
    const groups = { heavy: { weight: 3 }, light: { weight: 1 } };
    const one = await fixture.limiter({ name, concurrency: 1, groups });
    const two = await fixture.limiter({ name, concurrency: 1, groups });
    const waiters = Array.from({ length: 80 }, (_, i) => (i % 2 === 0 ? { group: 'heavy', via: 'one' } : { group: 'light', via: 'two' }));
    const served = await serveAll({ one, two }, waiters);
    const firstForty = served.slice(0, 40);
    const heavy = firstForty.filter((entry) => entry.group === 'heavy').length;
    console.log(`fair-weights: heavy ${heavy} of the first 40 grants`);
    expect(heavy).toBeGreaterThanOrEqual(29);
    expect(heavy).toBeLessThanOrEqual(31);
  });

  it('a group name outside its pattern is refused before anything is sent', async () => {
    const limiter = await fixture.limiter({ name: uniqueName('fair-bad'), concurrency: 1, groups: {} });
    await expect(limiter.acquire({ group: 'a b' })).rejects.toThrow(InvalidArgumentError);
    await expect(limiter.acquire({ group: '*' })).rejects.toThrow(InvalidArgumentError);
    await expect(limiter.acquire({ group: 'x'.repeat(65) })).rejects.toThrow(InvalidArgumentError);
  });
});
