import type { LimiterSnapshot } from '@tollgate/limiter';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stopAllServices, type ServiceProcess } from '../support/processes.js';
import { HEARTBEAT_MS, LEASE_TTL_MS, SETTLE_TIMEOUT_MS, eventually, jobRecord, messagesRequest, metric, settle, startFleet, type Fleet } from '../support/fleet.js';

const CONCURRENCY = 5;
const WORKERS = 4;
const JOBS = 80;
/** Fewer jobs while every call outlives a lease. */
const STOP_JOBS = 10;
/** Slack the design allows past the lease TTL for a dead process's permits (DESIGN §7). */
const RECLAIM_SLACK_MS = 500;
/** How often the test reads the limiter's snapshot while it waits for leases to go. */
const SNAPSHOT_POLL_MS = 25;
/** Calls last this long upstream in the kill test, so that a kill lands while permits are held. */
const KILL_CALL_MS = 600;
/** Calls outlive the lease in the SIGSTOP test, so the frozen worker's calls overlap the others' after its leases expire. */
const STOP_CALL_MS = 2 * LEASE_TTL_MS;
const STOP_FOR_MS = 3 * LEASE_TTL_MS;

let fleet: Fleet;

const ownerOf = (leaseId: string) => leaseId.slice(0, leaseId.lastIndexOf(':'));

async function enqueueJobs(tag: string, count: number): Promise<string[]> {
  return Promise.all(Array.from({ length: count }, (_, i) => fleet.producer.enqueue(messagesRequest(i, { maxTokens: 8 }), { idempotencyKey: `${tag}-${i}`, priority: i % 10 })));
}

async function waitUntilHolding(worker: ServiceProcess): Promise<number> {
  let held = 0;
  const holding = await eventually(async () => (held = await metric(worker, 'tollgate_permits_held')) > 0, 30_000);
  expect(holding, `${worker.name} never held a permit`).toBe(true);
  return held;
}

describe('worker faults (DESIGN §7 rows 1 and 2)', () => {
  beforeAll(async () => {
    fleet = await startFleet({ workers: WORKERS, concurrency: CONCURRENCY, mockEnv: { MOCK_LATENCY_MS: String(KILL_CALL_MS) } });
  });

  afterAll(async () => {
    await fleet?.close();
    await stopAllServices();
  });

  it('G6, G10: kill -9 of a worker holding permits: permits back within leaseTtlMs + 0.5 s, its jobs retried, 0 lost', { timeout: SETTLE_TIMEOUT_MS + 30_000 }, async () => {
    await fleet.mockAdmin('reset');
    const ids = await enqueueJobs('kill', JOBS);
    const victim = fleet.workers[0]!;
    const held = await waitUntilHolding(victim);
    victim.signal('SIGKILL');
    await victim.exited;
    const atKill = await fleet.observer.snapshot();
    const initial = new Set(atKill.leases.map((lease) => lease.id));
    // Every lease seen from the kill on: a live owner's lease is extended by heartbeats or released before it expires;
    // the dead owner's leases are never extended and leave only once expired (reclaimed).
    const seen = new Map<string, { expiresAtMs: number; extended: boolean; goneAtMs: number | undefined }>();
    let reclaimedOwners = new Set<string>();
    const observe = (snapshot: LimiterSnapshot) => {
      const present = new Set(snapshot.leases.map((lease) => lease.id));
      for (const lease of snapshot.leases) {
        const known = seen.get(lease.id);
        if (known === undefined) seen.set(lease.id, { expiresAtMs: lease.expiresAtMs, extended: false, goneAtMs: undefined });
        else if (lease.expiresAtMs > known.expiresAtMs) Object.assign(known, { expiresAtMs: lease.expiresAtMs, extended: true });
      }
      for (const [id, lease] of seen) if (lease.goneAtMs === undefined && !present.has(id)) lease.goneAtMs = snapshot.nowMs;
      reclaimedOwners = new Set([...seen].filter(([, lease]) => !lease.extended && lease.goneAtMs !== undefined && lease.goneAtMs >= lease.expiresAtMs).map(([id]) => ownerOf(id)));
    };
    observe(atKill);
    const deadLeases = () => [...seen].filter(([id]) => reclaimedOwners.has(ownerOf(id)));
    const gone = await eventually(
      async () => {
        observe(await fleet.observer.snapshot());
        return reclaimedOwners.size > 0 && deadLeases().every(([, lease]) => lease.goneAtMs !== undefined);
      },
      LEASE_TTL_MS * 4,
      SNAPSHOT_POLL_MS,
    );
    const dead = deadLeases();
    const heldAtKill = dead.filter(([id]) => initial.has(id));
    const lastGoneMs = (leases: typeof dead) => Math.max(...leases.map(([, lease]) => (lease.goneAtMs ?? Number.POSITIVE_INFINITY) - atKill.nowMs)); // Redis time
    const reclaimMs = lastGoneMs(heldAtKill);
    const grantedAfterKill = dead.length - heldAtKill.length;
    const outcomes = await settle(fleet.producer, ids);
    const stats = await fleet.mockStats();
    const records = await Promise.all(ids.map((id) => jobRecord(fleet.producer, id)));
    const retried = records.filter((record) => record.stalledCount > 0 || record.attemptsMade > 1).length;
    console.log(
      `kill -9: ${retried} jobs retried after the kill (BullMQ stalled recovery); ` +
        ` victim held ${held} permits (metric), ${heldAtKill.length} leases at the kill, all back ${reclaimMs} ms after it (bound ${LEASE_TTL_MS + RECLAIM_SLACK_MS} ms); ` +
        `${grantedAfterKill} more leases granted to its orphaned waiters after the kill, the last back ${grantedAfterKill > 0 ? lastGoneMs(dead) : 0} ms after it; ` +
        `calls ${stats.messages} for ${JOBS} jobs (${stats.messages - JOBS} repeated); completed ${outcomes.completed.length}, failed ${outcomes.failed.size}, lost ${
          outcomes.lost.length
        }; mock max concurrent ${stats.maxConcurrent}/${CONCURRENCY}`,
    );
    expect(gone).toBe(true);
    expect(heldAtKill.length).toBeGreaterThan(0);
    expect(reclaimMs).toBeLessThanOrEqual(LEASE_TTL_MS + RECLAIM_SLACK_MS);
    expect(outcomes.completed).toHaveLength(JOBS);
    expect(outcomes.lost).toEqual([]);
    expect(retried).toBeGreaterThan(0); // the victim's active jobs were picked up again by another worker
    expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY);
    expect(stats.byStatus['429'] ?? 0).toBe(0);
  });

  it(
    'G7, G10: SIGSTOP for 3 × leaseTtlMs then SIGCONT: its calls aborted within one heartbeat, overshoot ≤ its permits, 0 lost',
    { timeout: SETTLE_TIMEOUT_MS + 60_000 },
    async () => {
      await fleet.startWorker(); // back to four
      await fleet.mockAdmin('config', { latency: { timeToFirstTokenMs: STOP_CALL_MS, perTokenMs: 0 } });
      await fleet.mockAdmin('reset');
      const ids = await enqueueJobs('stop', STOP_JOBS);
      const victim = fleet.workers.find((worker) => worker.running)!;
      const lostBefore = await metric(victim, 'tollgate_lease_lost_total');
      const held = await waitUntilHolding(victim);
      victim.signal('SIGSTOP');
      await new Promise((resolve) => setTimeout(resolve, STOP_FOR_MS));
      const resumedAt = performance.now();
      victim.signal('SIGCONT');
      let lost = 0;
      const aborted = await eventually(async () => (lost = (await metric(victim, 'tollgate_lease_lost_total')) - lostBefore) >= held, 10_000, 10);
      const abortMs = performance.now() - resumedAt;
      const outcomes = await settle(fleet.producer, ids);
      const stats = await fleet.mockStats();
      console.log(
        `SIGSTOP: victim held ${held} permits, frozen ${STOP_FOR_MS} ms; ${lost} leases reported lost ${Math.round(abortMs)} ms after SIGCONT (heartbeat ${HEARTBEAT_MS} ms); ` +
          `mock max concurrent ${stats.maxConcurrent} (bound ${CONCURRENCY} + ${held}); completed ${outcomes.completed.length}, failed ${outcomes.failed.size}, lost ${outcomes.lost.length}`,
      );
      expect(aborted).toBe(true);
      expect(abortMs).toBeLessThanOrEqual(HEARTBEAT_MS);
      expect(stats.maxConcurrent).toBeLessThanOrEqual(CONCURRENCY + held);
      expect(outcomes.completed).toHaveLength(STOP_JOBS);
      expect(outcomes.lost).toEqual([]);
      expect(outcomes.failed.size).toBe(0);
    },
  );
});
