import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RedisServerProcess, freePort } from '@tollgate/test-support';
import { imageCommand, localEnvironment, localHealthcheck, type ComposeService, type PortMap } from './compose.js';
import { spawnService, type ServiceProcess } from './processes.js';

const run = promisify(execFile);

/** Compose's default healthcheck retries and interval, used when the file gives none. */
const HEALTHCHECK_RETRIES_DEFAULT = 3;
const HEALTHCHECK_INTERVAL_MS_DEFAULT = 2_000;
/** One healthcheck command may take this long. */
const HEALTHCHECK_TIMEOUT_MS = 10_000;

/** The compose file running as local processes. */
export interface ComposeStack {
  redis: RedisServerProcess;
  /** Every instance of every Node service, by service name (a scaled service has several). */
  instances: Map<string, ServiceProcess[]>;
  /** The environment each instance was started with, after the port mapping. */
  environments: Map<string, Array<Record<string, string>>>;
  portOf: PortMap;
  /** Runs a service instance's healthcheck; resolves true when it exits 0. */
  healthy(service: string, replica?: number): Promise<boolean>;
  close(): Promise<void>;
}

function intervalMs(text: string | undefined): number {
  const match = /^(\d+)(ms|s)$/.exec(text ?? '');
  if (!match) return HEALTHCHECK_INTERVAL_MS_DEFAULT;
  return Number(match[1]) * (match[2] === 's' ? 1_000 : 1);
}

/** Services in an order where every dependency comes first. */
function startOrder(services: ReadonlyMap<string, ComposeService>): ComposeService[] {
  const ordered: ComposeService[] = [];
  const visit = (name: string, path: readonly string[]) => {
    if (ordered.some((service) => service.name === name)) return;
    if (path.includes(name)) throw new Error(`depends_on cycle: ${[...path, name].join(' → ')}`);
    const service = services.get(name);
    if (service === undefined) throw new Error(`${path.at(-1)} depends on ${name}, which is not a service`);
    for (const dependency of service.dependsOn) visit(dependency.service, [...path, name]);
    ordered.push(service);
  };
  for (const name of services.keys()) visit(name, []);
  return ordered;
}

/**
 * Starts every service of the compose file as local processes, in depends_on order, waiting for `service_healthy`
 * dependencies with their own healthchecks. `scale` gives the replica count per service (default 1).
 */
export async function startComposeStack(services: ReadonlyMap<string, ComposeService>, scale: Readonly<Record<string, number>> = {}): Promise<ComposeStack> {
  const ports = new Map<string, number>();
  const portOf: PortMap = (service, containerPort, replica = 0) => {
    const port = ports.get(`${service}:${containerPort}:${replica}`);
    if (port === undefined) throw new Error(`no local port for ${service}:${containerPort} (replica ${replica})`);
    return port;
  };
  for (const service of services.values()) {
    for (let replica = 0; replica < (scale[service.name] ?? 1); replica += 1) {
      for (const containerPort of service.containerPorts) ports.set(`${service.name}:${containerPort}:${replica}`, await freePort());
    }
  }

  const redisServices = [...services.values()].filter((service) => service.spec.image?.startsWith('redis:'));
  if (redisServices.length !== 1) throw new Error(`expected one redis service, found ${redisServices.length}`);
  const [redisService] = redisServices as [ComposeService];
  const [program, ...redisArgs] = redisService.spec.command ?? ['redis-server'];
  if (program !== 'redis-server') throw new Error(`redis command must start with redis-server, got ${program}`);
  const redisPort = portOf(redisService.name, redisService.containerPorts[0] ?? 6379);
  const redis = await RedisServerProcess.start({ port: redisPort, args: redisArgs });

  const instances = new Map<string, ServiceProcess[]>();
  const environments = new Map<string, Array<Record<string, string>>>();
  const healthy = async (name: string, replica = 0): Promise<boolean> => {
    const service = services.get(name);
    const command = service && localHealthcheck(service, portOf, replica);
    if (command === undefined) throw new Error(`${name} has no healthcheck`);
    const [file = '', ...args] = command;
    try {
      await run(file === 'node' ? process.execPath : file, args, { timeout: HEALTHCHECK_TIMEOUT_MS });
      return true;
    } catch {
      return false; // a non-zero exit is an unhealthy answer, as in Compose
    }
  };
  const waitHealthy = async (name: string) => {
    const healthcheck = services.get(name)?.spec.healthcheck;
    const attempts = healthcheck?.retries ?? HEALTHCHECK_RETRIES_DEFAULT;
    for (let attempt = 0; attempt < attempts; attempt += 1) {
      if (await healthy(name)) return;
      await new Promise((resolve) => setTimeout(resolve, intervalMs(healthcheck?.interval)));
    }
    throw new Error(`${name} did not become healthy after ${attempts} checks`);
  };

  const stack: ComposeStack = {
    redis,
    instances,
    environments,
    portOf,
    healthy,
    close: async () => {
      await Promise.all([...instances.values()].flat().map((instance) => instance.stop()));
      await redis.close();
    },
  };
  try {
    for (const service of startOrder(services)) {
      for (const dependency of service.dependsOn) {
        if (dependency.condition === 'service_healthy') await waitHealthy(dependency.service);
      }
      if (service === redisService) continue;
      const command = imageCommand(service);
      const replicas = scale[service.name] ?? 1;
      const envs = Array.from({ length: replicas }, (_, replica) => localEnvironment(service, services, portOf, replica));
      environments.set(service.name, envs);
      instances.set(
        service.name,
        await Promise.all(envs.map((env, replica) => spawnService({ name: `${service.name}-${replica + 1}`, command: command.local.command, args: command.local.args, env }))),
      );
    }
  } catch (error) {
    await stack.close();
    throw error;
  }
  return stack;
}
