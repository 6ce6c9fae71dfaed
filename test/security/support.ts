import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { startFleet, type Fleet } from '../support/fleet.js';
import { GATEWAY_ENTRY, sourceEntryCommand, spawnService, type ServiceProcess } from '../support/processes.js';

/** Two tenants, an admin and a scraper: every token long enough, and none a prefix of another. */
export const TOKEN_ALPHA = 'tok-alpha-5f1c7e2a9b3d4e6f';
export const TOKEN_BETA = 'tok-beta-8a2b4c6d8e0f1a3b';
export const ADMIN_TOKEN = 'tok-admin-c3d5e7f9a1b3c5d7';
export const METRICS_TOKEN = 'tok-scrape-e1f3a5b7c9d1e3f5';
export const TENANT_TOKENS = `alpha:${TOKEN_ALPHA},beta:${TOKEN_BETA}`;

/** A fleet with one worker and a gateway that knows both tenants, the admin and the scraper. */
export function startSecurityFleet(gatewayEnv: Record<string, string> = {}, options: { workers?: number; workerEnv?: Record<string, string>; mockEnv?: Record<string, string> } = {}): Promise<Fleet> {
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
export async function startExtraGateway(fleet: Fleet, env: Record<string, string>): Promise<ServiceProcess & { url: string }> {
  const shared = ['REDIS_URL', 'TOLLGATE_NAME', 'TOLLGATE_QUEUE', 'TOLLGATE_CONCURRENCY', 'TOLLGATE_LEASE_TTL_MS', 'TOLLGATE_HEARTBEAT_MS', 'LOG_LEVEL'];
  const common = Object.fromEntries(shared.flatMap((name) => (fleet.workerEnv[name] === undefined ? [] : [[name, fleet.workerEnv[name]]])));
  const { command, args } = sourceEntryCommand(GATEWAY_ENTRY);
  const gateway = await spawnService({
    name: 'extra-gateway',
    command,
    args,
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

/** Resident memory of a process, in bytes (Linux). */
export function rssBytes(pid: number): number {
  const kib = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kib) * 1024;
}
