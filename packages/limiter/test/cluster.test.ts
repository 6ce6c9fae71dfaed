import { spawnSync } from 'node:child_process';
import { RedisServerProcess, uniqueName } from '@tollgate/test-support';
import { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLimiter, type Limiter, type Permit } from '../src/index.js';

const PRIMARIES = 3;
let servers: RedisServerProcess[] = [];
let cluster: Cluster;

beforeAll(async () => {
  servers = await Promise.all(
    Array.from({ length: PRIMARIES }, () => RedisServerProcess.start({ args: ['--cluster-enabled', 'yes', '--cluster-node-timeout', '2000'] })),
  );
  const created = spawnSync('redis-cli', ['--cluster', 'create', ...servers.map((server) => `127.0.0.1:${server.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
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
    expect(keys.length).toBeGreaterThan(3);
    const slots = await Promise.all(keys.map((key) => cluster.cluster('KEYSLOT', key)));
    expect(new Set(slots.map(Number))).toEqual(new Set([slot]));
    await first.close();
    await second.close();
  });
});
