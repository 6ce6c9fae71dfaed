import { setTimeout as sleep } from 'node:timers/promises';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LimiterClosedError, createLimiter, type Limiter, type Permit } from '../src/index.js';

/**
 * Model-based test: random sequences of acquire / release-with-settle / pause / time advance, run
 * against the real Lua in a real Redis by two limiter instances (two owners, so grants travel both
 * through script replies and through the grants lists), checked after every step against a small
 * reference model of the semaphore and the bucket.
 */

const CAPACITY_TOKENS = 100;
/** So slow a refill that the bucket changes only by grants and settles within one run. */
const REFILL_INTERVAL_MS = 24 * 60 * 60 * 1000;
const TOKENS_TOLERANCE = 0.05;
/** Grants reach the other process through a blocking read: give them this long to arrive. */
const SETTLE_MS = 25;
const SETTLE_RETRY_MS = 150;
/** A check never happens this close to the end of a pause, where model and Redis could disagree. */
const PAUSE_EDGE_MS = 120;

interface Waiting {
  label: number;
  priority: number;
  seq: number;
  cost: number;
}

class Model {
  readonly held = new Map<number, number>(); // label -> reserved cost
  readonly queue: Waiting[] = [];
  readonly grants: number[] = []; // labels in grant order
  tokens = CAPACITY_TOKENS;
  pausedUntil = 0; // performance.now() ms
  seq = 0;
  constructor(readonly limit: number) {}

  pump(now: number): void {
    while (this.queue.length > 0 && now >= this.pausedUntil) {
      this.queue.sort((a, b) => a.priority - b.priority || a.seq - b.seq);
      const head = this.queue[0];
      if (head === undefined || this.held.size >= this.limit || this.tokens < head.cost) return;
      this.queue.shift();
      this.tokens -= head.cost;
      this.held.set(head.label, head.cost);
      this.grants.push(head.label);
    }
  }
}

class Real {
  readonly granted = new Map<number, Permit>();
  readonly pending = new Set<number>();
  readonly failures: unknown[] = [];
  nextLabel = 0;
  constructor(readonly owners: readonly Limiter[]) {}
}

async function settle(model: Model, real: Real): Promise<void> {
  const untilEdge = model.pausedUntil - performance.now();
  if (untilEdge > -PAUSE_EDGE_MS && untilEdge < PAUSE_EDGE_MS) await sleep(untilEdge + PAUSE_EDGE_MS);
  model.pump(performance.now());
  await sleep(SETTLE_MS);
  if (real.granted.size !== model.held.size) await sleep(SETTLE_RETRY_MS); // a slow hand-off, not a wrong one
}

async function check(model: Model, real: Real): Promise<void> {
  await settle(model, real);
  expect(real.failures).toEqual([]);
  expect([...real.granted.keys()].sort((a, b) => a - b)).toEqual([...model.held.keys()].sort((a, b) => a - b));
  // grants follow the model's order: fences rise with every grant, fleet-wide
  const byFence = [...real.granted.entries()].sort(([, a], [, b]) => a.fence - b.fence).map(([label]) => label);
  expect(byFence).toEqual(model.grants.filter((label) => real.granted.has(label)));
  const snapshot = await real.owners[0]!.snapshot();
  expect(snapshot.inFlight).toBe(model.held.size);
  expect(snapshot.inFlight).toBeLessThanOrEqual(model.limit);
  expect(snapshot.waiting).toBe(model.queue.length);
  expect(Math.abs((snapshot.buckets.tokens?.tokens ?? 0) - model.tokens)).toBeLessThan(TOKENS_TOLERANCE);
}

type Command = fc.AsyncCommand<Model, Real>;

class AcquireCommand implements Command {
  constructor(
    readonly owner: number,
    readonly priority: number,
    readonly cost: number,
  ) {}
  check = () => true;
  async run(model: Model, real: Real) {
    const label = real.nextLabel++;
    real.pending.add(label);
    void real.owners[this.owner]!.acquire({ cost: { tokens: this.cost }, priority: this.priority }).then(
      (permit) => {
        real.pending.delete(label);
        real.granted.set(label, permit);
      },
      (error: unknown) => {
        if (!(error instanceof LimiterClosedError)) real.failures.push(error); // closing ends a run's leftover waiters
      },
    );
    model.queue.push({ label, priority: this.priority, seq: model.seq++, cost: this.cost });
    await sleep(5); // let the acquire reach Redis before the model orders the next one after it
    await check(model, real);
  }
  toString = () => `acquire(owner ${this.owner}, priority ${this.priority}, cost ${this.cost})`;
}

class ReleaseCommand implements Command {
  constructor(
    readonly pick: number,
    readonly usedDelta: number,
  ) {}
  check = (model: Readonly<Model>) => model.held.size > 0;
  async run(model: Model, real: Real) {
    const labels = [...model.held.keys()].sort((a, b) => a - b);
    const label = labels[this.pick % labels.length]!;
    const reserved = model.held.get(label)!;
    const used = Math.max(0, reserved + this.usedDelta);
    await real.granted.get(label)!.release({ used: { tokens: used } });
    real.granted.delete(label);
    model.held.delete(label);
    model.tokens = Math.min(CAPACITY_TOKENS, model.tokens + reserved - used);
    await check(model, real);
  }
  toString = () => `release(#${this.pick}, used reserved${this.usedDelta >= 0 ? '+' : ''}${this.usedDelta})`;
}

class PauseCommand implements Command {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    await real.owners[1]!.pause(this.ms);
    model.pausedUntil = Math.max(model.pausedUntil, performance.now() + this.ms);
    await check(model, real);
  }
  toString = () => `pause(${this.ms} ms)`;
}

class AdvanceCommand implements Command {
  constructor(readonly ms: number) {}
  check = () => true;
  async run(model: Model, real: Real) {
    await sleep(this.ms);
    await check(model, real);
  }
  toString = () => `advance(${this.ms} ms)`;
}

const commands = [
  fc.tuple(fc.integer({ min: 0, max: 1 }), fc.constantFrom(0, 9), fc.integer({ min: 0, max: 60 })).map(([owner, priority, cost]) => new AcquireCommand(owner, priority, cost)),
  fc.tuple(fc.nat(), fc.integer({ min: -30, max: 30 })).map(([pick, delta]) => new ReleaseCommand(pick, delta)),
  fc.integer({ min: 150, max: 400 }).map((ms) => new PauseCommand(ms)),
  fc.integer({ min: 0, max: 300 }).map((ms) => new AdvanceCommand(ms)),
];

let redis: TestRedis;

beforeAll(async () => {
  redis = await startRedis({ dedicated: true });
});

afterAll(async () => {
  await redis.close();
});

describe('model test (fast-check)', () => {
  it('G1, G2, G3, G4: after every step: in flight ≤ limit, the bucket matches the model, grants follow the model order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 2 }), fc.commands(commands, { maxCommands: 18 }), async (limit, steps) => {
        const name = uniqueName('model');
        const options = {
          redis: redis.url,
          name,
          concurrency: limit,
          leaseTtlMs: 60_000,
          heartbeatMs: 20_000,
          rates: { tokens: { limit: CAPACITY_TOKENS, intervalMs: REFILL_INTERVAL_MS } },
        };
        const owners = [createLimiter(options), createLimiter(options)];
        await Promise.all(owners.map((owner) => owner.ready()));
        const real = new Real(owners);
        try {
          await fc.asyncModelRun(() => ({ model: new Model(limit), real }), steps);
        } finally {
          for (const permit of real.granted.values()) await permit.release();
          await Promise.all(owners.map((owner) => owner.close().catch(() => {})));
        }
      }),
      { numRuns: 40, endOnFailure: true },
    );
  }, 240_000);
});
