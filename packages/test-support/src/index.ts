export { startRedis, type StartRedisOptions, type TestRedis } from './start-redis.js';
export { RedisServerProcess, freePort, type RedisServerOptions } from './redis-server.js';
export { uniqueName } from './names.js';
export { seededRandom } from './random.js';
export { thrown } from './thrown.js';
export { dumpRedis } from './dump-redis.js';
export {
  startOverlapServer,
  OVERLAP_HOLD_MS_DEFAULT,
  OVERLAP_HOLD_MS_MAX,
  OVERLAP_SEED_DEFAULT,
  type OverlapHoldMs,
  type OverlapServer,
  type OverlapServerOptions,
  type OverlapStats,
  type OverlapStatsOptions,
  type RefillGapStats,
} from './overlap-server.js';
export {
  GATEWAY_ENTRY,
  MOCK_ENTRY,
  READY_TIMEOUT_MS,
  REPO_ROOT,
  STOP_GRACE_MS,
  WORKER_ENTRY,
  BUILT_ENV,
  entryCommand,
  spawnService,
  stopAllServices,
  type ReadyInfo,
  type ServiceProcess,
  type SpawnOptions,
} from './processes.js';
export { eventually } from './eventually.js';
