import type { Redis } from 'ioredis';

/** Commands the coordinator itself sends around a run; not part of any contender's cost. */
const COORDINATOR_COMMANDS = new Set(['info', 'config', 'flushall', 'ping', 'select', 'client']);

/** Zeroes Redis's per-command counters (`CONFIG RESETSTAT`) at the start of a measured run. */
export async function resetRedisStats(admin: Redis): Promise<void> {
  await admin.config('RESETSTAT');
}

/** One command's counters in `INFO commandstats`: calls, and the µs Redis spent in them. */
export interface CommandStat {
  calls: number;
  usec: number;
}

/**
 * Per command, what Redis executed since the last reset (`INFO commandstats`), including the
 * commands run inside Lua functions (FCALL's own usec includes theirs), without the coordinator's own.
 */
export async function redisCommandStats(admin: Redis): Promise<Map<string, CommandStat>> {
  const info = await admin.info('commandstats');
  const stats = new Map<string, CommandStat>();
  for (const line of info.split('\n')) {
    const match = /^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/.exec(line.trim());
    if (!match?.[1] || !match[2] || !match[3]) continue;
    if (!COORDINATOR_COMMANDS.has(match[1].split('|')[0] ?? match[1])) stats.set(match[1], { calls: Number(match[2]), usec: Number(match[3]) });
  }
  return stats;
}

/** Commands Redis executed since the last reset, scripts' inner commands included, without the coordinator's own. */
export function commandsExecuted(stats: ReadonlyMap<string, CommandStat>): number {
  let total = 0;
  for (const stat of stats.values()) total += stat.calls;
  return total;
}

/** CPU time the Redis server has used so far (`INFO cpu`, user + system), in microseconds. */
export async function redisCpuUs(admin: Redis): Promise<number> {
  const info = await admin.info('cpu');
  const seconds = (field: string): number => Number(new RegExp(`^${field}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return (seconds('used_cpu_user') + seconds('used_cpu_sys')) * 1_000_000;
}

/** `redis_version` from `INFO server`. */
export async function redisVersion(admin: Redis): Promise<string> {
  const info = await admin.info('server');
  return /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
}
