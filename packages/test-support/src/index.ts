export { startRedis, type StartRedisOptions, type TestRedis } from './start-redis.js';
export { RedisServerProcess, freePort, type RedisServerOptions } from './redis-server.js';
export { uniqueName } from './names.js';
