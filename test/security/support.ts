import { Redis } from 'ioredis';
import { startFleet, type Fleet } from '../support/fleet.js';
import { GATEWAY_ENTRY, entryCommand, spawnService, type ServiceProcess } from '../support/processes.js';

/** Two tenants, an admin and a scraper: every token long enough, and none a prefix of another. */
export const TOKEN_ALPHA = 'tok-alpha-5f1c7e2a9b3d4e6f';
export const TOKEN_BETA = 'tok-beta-8a2b4c6d8e0f1a3b';
export const ADMIN_TOKEN = 'tok-admin-c3d5e7f9a1b3c5d7';
export const METRICS_TOKEN = 'tok-scrape-e1f3a5b7c9d1e3f5';
export const TENANT_TOKENS = `alpha:${TOKEN_ALPHA},beta:${TOKEN_BETA}`;

/** A fleet with one worker and a gateway that knows both tenants, the admin and the scraper. */
export function startSecurityFleet(
  gatewayEnv: Record<string, string> = {},
  options: { workers?: number; workerEnv?: Record<string, string>; mockEnv?: Record<string, string> } = {},
): Promise<Fleet> {
  return startFleet({
    concurrency: 8,
    workers: options.workers ?? 1,
    gateway: true,
    ...(options.workerEnv === undefined ? {} : { workerEnv: options.workerEnv }),
    ...(options.mockEnv === undefined ? {} : { mockEnv: options.mockEnv }),
    gatewayEnv: { GATEWAY_TOKENS: TENANT_TOKENS, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, GATEWAY_METRICS_TOKEN: METRICS_TOKEN, ...gatewayEnv },
  });
}

/** Every job in the fleet's queue, whatever its state. */
export async function jobCount(fleet: Fleet): Promise<number> {
  return Object.values(await fleet.producer.counts()).reduce((sum, count) => sum + count, 0);
}

/** A small valid Messages body. */
export function body(tag: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { model: 'claude-haiku-4-5', max_tokens: 16, messages: [{ role: 'user', content: `security ${tag}` }], ...extra };
}

export const json = (value: unknown) => JSON.stringify(value);

/** Headers for a JSON request of a tenant. */
export function asTenant(token: string, extra: Record<string, string> = {}): Record<string, string> {
  return { 'content-type': 'application/json', authorization: `Bearer ${token}`, ...extra };
}

/** Another gateway process on the fleet's Redis (the fleet's queue unless `TOLLGATE_QUEUE` says otherwise). */
export async function startExtraGateway(fleet: Fleet, env: Record<string, string>, options: { memoryProbe?: boolean } = {}): Promise<ServiceProcess & { url: string }> {
  const shared = ['REDIS_URL', 'TOLLGATE_NAME', 'TOLLGATE_QUEUE', 'TOLLGATE_CONCURRENCY', 'TOLLGATE_LEASE_TTL_MS', 'TOLLGATE_HEARTBEAT_MS', 'LOG_LEVEL'];
  const common = Object.fromEntries(shared.flatMap((name) => (fleet.workerEnv[name] === undefined ? [] : [[name, fleet.workerEnv[name]]])));
  const { command, args } = entryCommand(GATEWAY_ENTRY);
  const gateway = await spawnService({
    name: 'extra-gateway',
    command,
    args: options.memoryProbe ? ['--expose-gc', ...args.slice(0, -1), '--import', MEMORY_PROBE, ...args.slice(-1)] : args, // the probe is plain JavaScript: with tsx or without
    env: { ...common, PORT: '0', HOST: '127.0.0.1', GATEWAY_TOKENS: TENANT_TOKENS, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, GATEWAY_METRICS_TOKEN: METRICS_TOKEN, ...env },
  });
  return Object.assign(gateway, { url: gateway.ready.url ?? '' });
}

/** Redis's connected clients now. */
export async function connectedClients(url: string): Promise<number> {
  const admin = new Redis(url);
  try {
    return Number(/connected_clients:(\d+)/.exec(await admin.info('clients'))?.[1]) - 1; // not counting this one
  } finally {
    admin.disconnect();
  }
}

/** test/support/memory-probe.mjs, from the repository root (the services' working directory). */
const MEMORY_PROBE = './test/support/memory-probe.mjs';
/** How long a process started with the memory probe may take to answer it; a deadline, not a measurement. */
const MEMORY_PROBE_TIMEOUT_MS = 10_000;

/**
 * What a process started with `memoryProbe` retains after a full garbage collection: the V8 heap in use plus memory
 * outside it (`external`, which includes every Buffer and ArrayBuffer), in bytes.
 */
export async function retainedBytes(service: ServiceProcess): Promise<number> {
  const seen = service.logs.length;
  service.signal('SIGUSR2');
  const deadline = performance.now() + MEMORY_PROBE_TIMEOUT_MS;
  while (performance.now() < deadline) {
    const line = service.logs.slice(seen).find((logged) => logged.event === 'memory');
    if (line !== undefined) {
      if (line.gc !== true) throw new Error(`${service.name} runs without --expose-gc: no forced collection`);
      return Number(line.heapUsed) + Number(line.external);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`${service.name} did not answer the memory probe within ${MEMORY_PROBE_TIMEOUT_MS} ms`);
}
