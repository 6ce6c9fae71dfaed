import { spawn, spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AcquireTimeoutError, LimiterUnavailableError, createLimiter, limiterKeys, type Limiter, type Permit } from '../src/index.js';
import { until } from './support.js';

const PRIMARIES = 3;
let servers: RedisServerProcess[] = [];
let cluster: Cluster;

beforeAll(async () => {
  servers = await Promise.all(Array.from({ length: PRIMARIES }, () => RedisServerProcess.start({ args: ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] })));
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...servers.map((server) => `127.0.0.1:${server.port}`), '--cluster-replicas', '0', '--cluster-yes'], {
    encoding: 'utf8',
  });
  if (created.status !== 0) throw new Error(`redis-cli --cluster create failed: ${created.stderr || created.stdout}`);
  cluster = new Cluster(servers.map((server) => ({ host: '127.0.0.1', port: server.port })));
  for (let attempt = 0; attempt < 100; attempt++) {
    const info = await cluster.cluster('INFO').catch(() => '');
    if (String(info).includes('cluster_state:ok')) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}, 60_000);

afterAll(async () => {
  cluster?.disconnect();
  await Promise.all(servers.map((server) => server.close()));
});

describe('Redis Cluster', () => {
  it('keeps every key of a limiter in one slot and enforces the limit across two processes', async () => {
    const name = uniqueName('cluster');
    const options = { redis: cluster, name, concurrency: 2, rates: { requests: { limit: 1_000, intervalMs: 60_000 } } };
    const first: Limiter = createLimiter(options);
    const second: Limiter = createLimiter({ ...options, redis: cluster.duplicate() });
    await Promise.all([first.ready(), second.ready()]);
    const held = [await first.acquire(), await second.acquire()];
    let third: Permit | undefined;
    const pending = second.acquire().then((permit) => (third = permit));
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(third).toBeUndefined();
    await held[0]?.release(); // hands the slot to `second` through its grants list
    await pending;
    expect((await first.snapshot()).inFlight).toBe(2);
    await held[1]?.release();
    await third?.release();
    // every key of this limiter is in the slot of its hash tag
    const slot = Number(await cluster.cluster('KEYSLOT', `{tollgate:${name}}`));
    const keys = (await Promise.all(cluster.nodes('master').map((node) => node.keys(`*${name}*`)))).flat();
    // at least the config (with seq, fence and the buckets in it) and the owners, which outlive the permits
    expect(keys).toEqual(expect.arrayContaining([limiterKeys(name).config, limiterKeys(name).owners]));
    const slots = await Promise.all(keys.map((key) => cluster.cluster('KEYSLOT', key)));
    expect(new Set(slots.map(Number))).toEqual(new Set([slot]));
    await first.close();
    await second.close();
  });
});

/** Candidate names tried per pipeline when looking for a name whose hash tag falls in a given slot. */
const SLOT_SEARCH_BATCH = 2_000;
const SLOT_SEARCH_MAX = 200_000;
/** Keys of other users in the limiter's slot: redis-cli then takes seconds to move it. */
const SLOT_PADDING_KEYS = 20_000;

/** A limiter name whose keys hash to `slot` (asked of the cluster, in pipelined batches). */
async function nameInSlot(base: string, slot: number): Promise<string> {
  for (let from = 0; from < SLOT_SEARCH_MAX; from += SLOT_SEARCH_BATCH) {
    const names = Array.from({ length: SLOT_SEARCH_BATCH }, (_, index) => `${base}-${from + index}`);
    const node = cluster.nodes('master')[0];
    if (!node) throw new Error('no primary');
    const pipeline = node.pipeline();
    for (const name of names) pipeline.cluster('KEYSLOT', limiterKeys(name).config);
    const slots = (await pipeline.exec()) ?? [];
    const found = slots.findIndex(([, value]) => Number(value) === slot);
    if (found >= 0) return names[found] ?? '';
  }
  throw new Error(`no name in slot ${slot} among ${SLOT_SEARCH_MAX}`);
}

/** Cluster node ids by port, and the port that serves `slot`. */
async function slotOwner(slot: number): Promise<{ port: number; ids: Map<number, string> }> {
  const ranges = (await cluster.cluster('SLOTS')) as unknown as Array<[number, number, [string, number, string]]>;
  const ids = new Map<number, string>();
  let port = 0;
  for (const [start, end, [, nodePort, id]] of ranges) {
    ids.set(nodePort, id);
    if (slot >= start && slot <= end) port = nodePort;
  }
  return { port, ids };
}

describe('Redis Cluster slot migration (case 8)', () => {
  it("redis-cli --cluster reshard of the limiter's slot under load: no permit beyond the limit, and the reshard completes", async () => {
    const LIMIT = 2;
    const LIMITERS = 3;
    const LOOPS = 4;
    // redis-cli moves a source's lowest slots first: the limiter gets the first slot of a primary
    const ranges = (await cluster.cluster('SLOTS')) as unknown as Array<[number, number, [string, number, string]]>;
    const slot = Math.min(...ranges.map(([start]) => start));
    const name = await nameInSlot(uniqueName('reshard'), slot);
    const { port: from, ids } = await slotOwner(slot);
    const to = [...ids.keys()].find((port) => port !== from) ?? 0;
    // other keys in the same slot (any app's keys can share it), so that moving the slot takes seconds, not a millisecond
    const source = cluster.nodes('master').find((node) => node.options.port === from);
    if (!source) throw new Error(`no primary on port ${from}`);
    for (let batch = 0; batch < SLOT_PADDING_KEYS / SLOT_SEARCH_BATCH; batch++) {
      const pipeline = source.pipeline();
      for (let index = 0; index < SLOT_SEARCH_BATCH; index++) pipeline.set(`{tollgate:${name}}:other:${batch * SLOT_SEARCH_BATCH + index}`, 'x');
      await pipeline.exec();
    }

    const clients = Array.from({ length: LIMITERS }, () => new Cluster(servers.map((server) => ({ host: '127.0.0.1', port: server.port }))));
    for (const client of clients) client.on('error', () => {}); // the limiters report what matters
    const limiters = clients.map((client) => createLimiter({ redis: client, name, concurrency: LIMIT, leaseTtlMs: 3_000, heartbeatMs: 500, redisTimeoutMs: 3_000 }));
    for (const limiter of limiters) limiter.on('redisError', () => {}); // redirections and retries while the slot moves
    await Promise.all(limiters.map((limiter) => limiter.ready()));

    let live = 0;
    let maxLive = 0;
    let granted = 0;
    let grantedAfter = 0;
    let unavailable = 0;
    let resharded = false;
    let stop = false;
    const loop = async (limiter: Limiter) => {
      while (!stop) {
        let permit: Permit;
        try {
          permit = await limiter.acquire({ timeoutMs: 5_000 });
        } catch (error) {
          if (error instanceof LimiterUnavailableError || error instanceof AcquireTimeoutError) {
            unavailable += 1; // calls may slow down or fail while the slot moves; never over-grant
            continue;
          }
          throw error;
        }
        granted += 1;
        if (resharded) grantedAfter += 1;
        if (!permit.signal.aborted) live += 1;
        maxLive = Math.max(maxLive, live);
        await sleep(5 + (granted % 15));
        if (!permit.signal.aborted) live -= 1;
        await permit.release().catch(() => {});
      }
    };
    const load = limiters.flatMap((limiter) => Array.from({ length: LOOPS }, () => loop(limiter)));

    while (granted < 100) await sleep(50); // traffic runs (after the new dataset's grace pause)
    const reshard = spawn(
      'redis-cli',
      ['--cluster', 'reshard', `127.0.0.1:${from}`, '--cluster-from', ids.get(from) ?? '', '--cluster-to', ids.get(to) ?? '', '--cluster-slots', '1', '--cluster-yes'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let output = '';
    reshard.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    reshard.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const grantedBefore = granted;
    const reshardStarted = performance.now();
    const code = await new Promise<number | null>((resolve) => reshard.on('exit', (exitCode) => resolve(exitCode)));
    const reshardMs = performance.now() - reshardStarted;
    const grantedDuring = granted - grantedBefore;
    resharded = true;
    await sleep(1_500); // and keeps running on the new owner
    stop = true;
    await Promise.all(load);

    console.log(
      `reshard of slot ${slot} (${from} → ${to}) in ${reshardMs.toFixed(0)} ms: exit ${String(
        code,
      )}, ${granted} grants (${grantedDuring} during, ${grantedAfter} after), ${unavailable} failed or timed out, max live ${maxLive} of ${LIMIT}`,
    );
    expect(code, output).toBe(0);
    expect(maxLive).toBeLessThanOrEqual(LIMIT);
    expect(grantedAfter).toBeGreaterThan(0);
    expect((await slotOwner(slot)).port).toBe(to);
    // every key of the limiter moved with the slot; none was left behind or created on the old owner
    const keysOn = async (port: number) => {
      const node = cluster.nodes('master').find((candidate) => candidate.options.port === port);
      return node ? (await node.keys(`*${name}*`)).filter((key) => !key.includes(':other:')) : [];
    };
    expect(await keysOn(from)).toEqual([]);
    expect(await keysOn(to)).toEqual(expect.arrayContaining([limiterKeys(name).config, limiterKeys(name).owners]));
    // every permit is back: a release (or the cancel of a late grant) that met the slot's move is sent again by the
    // next heartbeat (500 ms), well before its lease (3 s) would expire
    expect(await until(async () => (await limiters[0]?.snapshot())?.inFlight === 0, 1_500)).toBe(true);
    await Promise.all(limiters.map((limiter) => limiter.close()));
    for (const client of clients) client.disconnect();
  }, 90_000);

  it("while a slot is migrating, no call runs on the importing node without the limiter's keys (no second dataset there)", async () => {
    const name = uniqueName('migrating');
    const slot = Number(await cluster.cluster('KEYSLOT', limiterKeys(name).config));
    const { port: from, ids } = await slotOwner(slot);
    const to = [...ids.keys()].find((port) => port !== from) ?? 0;
    const node = (port: number) => {
      const found = cluster.nodes('master').find((candidate) => candidate.options.port === port);
      if (!found) throw new Error(`no primary on port ${port}`);
      return found;
    };
    const client = new Cluster(servers.map((server) => ({ host: '127.0.0.1', port: server.port })));
    client.on('error', () => {});
    const first = createLimiter({ redis: client, name, concurrency: 2, leaseTtlMs: 3_000, heartbeatMs: 500, redisTimeoutMs: 2_000 });
    first.on('redisError', () => {});
    await first.ready();
    const held = await first.acquire({ timeoutMs: 5_000 }); // after the new dataset's grace pause
    // the first step of a reshard: the target imports the slot, the source migrates it; no key has moved yet
    await node(to).cluster('SETSLOT', slot, 'IMPORTING', ids.get(from) ?? '');
    await node(from).cluster('SETSLOT', slot, 'MIGRATING', ids.get(to) ?? '');
    try {
      const fresh = createLimiter({ redis: client, name, concurrency: 2, leaseTtlMs: 3_000, heartbeatMs: 500, redisTimeoutMs: 2_000 });
      fresh.on('redisError', () => {});
      await fresh
        .ready()
        .then(() => fresh.acquire({ timeoutMs: 1_000 }))
        .then((permit) => permit.release())
        .catch(() => {}); // may be refused (TRYAGAIN) or served by the source; never by the importing node
      await held.release().catch(() => {});
      await fresh.close();
      expect(await node(to).keys(`*${name}*`)).toEqual([]);
    } finally {
      await node(from).cluster('SETSLOT', slot, 'STABLE');
      await node(to).cluster('SETSLOT', slot, 'STABLE');
      await first.close();
      client.disconnect();
    }
  }, 60_000);
});
