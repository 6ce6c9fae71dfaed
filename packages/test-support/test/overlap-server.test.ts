import { Agent, request } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { startOverlapServer, type OverlapServer } from '../src/index.js';

const HOLD_MS = 15;
const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** One real HTTP call; resolves with the status and body once the answer is read. */
function call(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Runs `total` calls through `width` sequential lanes: at most `width` in flight at once. */
async function runLanes(url: string, width: number, total: number): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < total) {
      next += 1;
      const reply = await call(url);
      expect(reply.status).toBe(200);
    }
  };
  await Promise.all(Array.from({ length: width }, lane));
}

describe('startOverlapServer', () => {
  let server: OverlapServer | undefined;

  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('counts calls, in-flight and max in-flight exactly', async () => {
    server = await startOverlapServer({ holdMs: HOLD_MS });
    const before = server.stats();
    expect(before).toMatchObject({ calls: 0, completed: 0, inFlight: 0, maxInFlight: 0, busyMs: 0, inFlightMean: 0 });

    await runLanes(server.url, 4, 40);
    const stats = server.stats({ limit: 4 });
    expect(stats.calls).toBe(40);
    expect(stats.completed).toBe(40);
    expect(stats.aborted).toBe(0);
    expect(stats.inFlight).toBe(0);
    expect(stats.maxInFlight).toBeLessThanOrEqual(4);
    expect(stats.maxInFlight).toBeGreaterThanOrEqual(1);
    expect(stats.inFlightMean).toBeGreaterThan(0);
    expect(stats.inFlightMean).toBeLessThanOrEqual(stats.maxInFlight);
    expect(stats.utilization).toBeCloseTo(stats.inFlightMean / 4, 10);
    expect(stats.limit).toBe(4);
  });

  it('sees every call at once when they are all sent together', async () => {
    server = await startOverlapServer({ holdMs: 200 });
    const url = server.url;
    const replies = await Promise.all(Array.from({ length: 12 }, () => call(url)));
    expect(replies.every((reply) => reply.status === 200 && reply.body === '{"ok":true}')).toBe(true);
    expect(server.stats().maxInFlight).toBe(12);
  });

  it('matches every start after saturation to an earlier end (refill gaps)', async () => {
    server = await startOverlapServer({ holdMs: { min: 20, max: 40 }, seed: 42 });
    const limit = 3;
    await runLanes(server.url, limit, 30);
    const stats = server.stats({ limit });
    expect(stats.maxInFlight).toBe(limit);
    const gap = stats.refillGap;
    // every start after the fleet first had `limit` in flight either refilled a freed slot or is unmatched
    expect(gap.count + gap.unmatchedStarts).toBeLessThanOrEqual(stats.calls - limit);
    expect(gap.count).toBeGreaterThan(0);
    // with lanes, a start only follows its own lane's end: no start goes unmatched
    expect(gap.unmatchedStarts).toBe(0);
    expect(gap.medianMs).toBeGreaterThanOrEqual(0);
    expect(gap.p99Ms).toBeGreaterThanOrEqual(gap.medianMs);
    expect(gap.maxMs).toBeGreaterThanOrEqual(gap.p99Ms);
  });

  it('reports no refill gaps when the limit was never reached', async () => {
    server = await startOverlapServer({ holdMs: 1 });
    await runLanes(server.url, 2, 10);
    const gap = server.stats({ limit: 5 }).refillGap;
    expect(gap).toMatchObject({ count: 0, unmatchedStarts: 0, medianMs: 0, p99Ms: 0 });
  });

  it('honours ?holdMs=N and counts client aborts as ended calls', async () => {
    server = await startOverlapServer({ holdMs: 10_000 });
    const quick = await call(`${server.url}/?holdMs=0`);
    expect(quick.status).toBe(200);

    const controller = new AbortController();
    const pending = fetch(server.url, { signal: controller.signal });
    while (server.stats().inFlight === 0) await new Promise((resolve) => setImmediate(resolve));
    controller.abort();
    await expect(pending).rejects.toThrow();
    while (server.stats().completed < 2) await new Promise((resolve) => setImmediate(resolve));
    expect(server.stats()).toMatchObject({ calls: 2, completed: 2, aborted: 1, inFlight: 0, maxInFlight: 1 });
  });

  it('reset() forgets every count, including calls still in flight', async () => {
    server = await startOverlapServer({ holdMs: 50 });
    const inFlight = call(server.url);
    while (server.stats().inFlight === 0) await new Promise((resolve) => setImmediate(resolve));
    server.reset();
    await inFlight;
    expect(server.stats()).toMatchObject({ calls: 0, completed: 0, inFlight: 0, maxInFlight: 0 });
    await call(`${server.url}/?holdMs=1`);
    expect(server.stats()).toMatchObject({ calls: 1, completed: 1, inFlight: 0, maxInFlight: 1 });
  });

  it('rejects a hold range with min above max', async () => {
    await expect(startOverlapServer({ holdMs: { min: 10, max: 5 } })).rejects.toThrow(RangeError);
  });
});
