import { Redis } from 'ioredis';

const SCAN_BATCH = 500;

/** Every key of a Redis with its value, whatever the type, as text: for tests that look for secrets in Redis. */
export async function dumpRedis(url: string): Promise<string> {
  const connection = new Redis(url);
  const parts: string[] = [];
  try {
    let cursor = '0';
    do {
      const [next, keys] = await connection.scan(cursor, 'COUNT', SCAN_BATCH);
      cursor = next;
      for (const key of keys) {
        const type = await connection.type(key);
        let value: unknown;
        if (type === 'string') value = await connection.get(key);
        else if (type === 'hash') value = await connection.hgetall(key);
        else if (type === 'zset') value = await connection.zrange(key, '0', '-1', 'WITHSCORES');
        else if (type === 'list') value = await connection.lrange(key, 0, -1);
        else if (type === 'set') value = await connection.smembers(key);
        else if (type === 'stream') value = await connection.xrange(key, '-', '+');
        else value = type;
        parts.push(`${key} ${JSON.stringify(value)}`);
      }
    } while (cursor !== '0');
  } finally {
    connection.disconnect();
  }
  return parts.join('\n');
}
