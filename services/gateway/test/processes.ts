import { spawnService, type ServiceProcess } from '../../worker/test/processes.js';

export { spawnService, type ServiceProcess } from '../../worker/test/processes.js';

export const GATEWAY_ENTRY = 'services/gateway/src/main.ts';
export const WORKER_ENTRY = 'services/worker/src/main.ts';

/** Starts the gateway as a process; its ready line carries its URL. */
export async function spawnGateway(env: Record<string, string>): Promise<ServiceProcess & { url: string }> {
  const gateway = await spawnService(GATEWAY_ENTRY, { PORT: '0', HOST: '127.0.0.1', ...env });
  return Object.assign(gateway, { url: String(gateway.ready.url) });
}

/** Stops every process with SIGKILL and waits for each (test cleanup). */
export async function killAll(processes: ServiceProcess[]): Promise<void> {
  for (const child of processes.splice(0)) {
    child.signal('SIGKILL');
    await child.exited;
  }
}
