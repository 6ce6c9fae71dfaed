import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedis, type TestRedis } from '../src/index.js';

describe('startRedis({ dedicated: true })', () => {
  let server: TestRedis;
  let client: Redis;

  beforeAll(async () => {
    server = await startRedis({ dedicated: true });
    client = new Redis(server.url, { maxRetriesPerRequest: 1 });
  });

  afterAll(async () => {
    client.disconnect();
    await server.close();
  });

  it('answers as a real Redis', async () => {
    await client.set('k', 'v');
    expect(await client.get('k')).toBe('v');
    expect(server.kind).not.toBe('external');
  });

  it('keeps the data across restart({ keepData: true }) and drops it with keepData: false', async () => {
    await client.set('kept', '1');
    await server.restart({ keepData: true });
    expect(await client.get('kept')).toBe('1');
    await server.restart({ keepData: false });
    expect(await client.get('kept')).toBeNull();
  });

  it('pause() freezes the server until resume()', async () => {
    await server.pause();
    const probe = new Redis(server.url, { commandTimeout: 200, maxRetriesPerRequest: 0 });
    probe.on('error', () => {});
    await expect(probe.ping()).rejects.toThrow(/timed out/i);
    await server.resume();
    expect(await client.ping()).toBe('PONG');
    probe.disconnect();
  });
});
