import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import type { MockStats } from '@tollgate/mock-anthropic';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { imageCommand, loadCompose, type ComposeService } from '../support/compose.js';
import { startComposeStack, type ComposeStack } from '../support/compose-stack.js';
import { REPO_ROOT } from '../support/processes.js';

/** `docker compose up --scale worker=3`, as local processes. */
const WORKER_REPLICAS = 3;
/** Requests sent through the gateway; half of them stream. */
const REQUESTS = 60;
const MODEL = 'claude-haiku-4-5';
const MAX_TOKENS = 16;
/** Deadline for the whole load (the mock's default latency is ~0.5 s a call at concurrency 5). */
const LOAD_TIMEOUT_MS = 120_000;

const services = loadCompose();
let stack: ComposeStack;

function service(name: string): ComposeService {
  const found = services.get(name);
  if (found === undefined) throw new Error(`docker-compose.yml has no ${name} service`);
  return found;
}

/** The one environment value of a service, failing with its name when unset. */
function envOf(name: string, variable: string): string {
  const value = service(name).environment[variable];
  if (value === undefined) throw new Error(`${name} sets no ${variable}`);
  return value;
}

describe('docker-compose.yml wiring, as local processes', () => {
  beforeAll(async () => {
    stack = await startComposeStack(services, { worker: WORKER_REPLICAS });
  });

  afterAll(async () => {
    await stack?.close();
  });

  it('declares what issue 6 asks: Redis 7 with AOF and noeviction, a published gateway, a scalable worker', () => {
    expect(service('redis').spec.image).toMatch(/^redis:7(\b|$)/);
    expect(service('gateway').published).toContainEqual({ host: 8080, container: 8080 });
    const worker = service('worker');
    expect(worker.spec.container_name).toBeUndefined(); // a fixed name cannot be scaled
    expect(worker.published.filter((port) => port.host !== 0)).toEqual([]); // nor a fixed host port
    for (const name of ['gateway', 'worker']) expect(service(name).dependsOn).toContainEqual({ service: 'redis', condition: 'service_healthy' });
    // the default upstream is the mock, so `docker compose up` works with no API key
    expect(envOf('worker', 'ANTHROPIC_BASE_URL')).toMatch(/^http:\/\/mock-anthropic:\d+$/);
  });

  it("builds each image to run the workspace's own `npm start`", () => {
    for (const name of ['worker', 'gateway', 'mock-anthropic']) {
      const command = imageCommand(service(name));
      const manifest = JSON.parse(readFileSync(join(REPO_ROOT, command.workspace, 'package.json'), 'utf8')) as { scripts?: Record<string, string> };
      expect(manifest.scripts?.start, `${name}: npm start`).toBe(command.cmd.join(' '));
      expect(command.entrypoint, `${name}: tini forwards SIGTERM`).toEqual(['/usr/bin/tini', '--']);
    }
  });

  it('switches the workers to the real API when ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL are set', () => {
    const real = loadCompose({ ANTHROPIC_API_KEY: 'sk-ant-real', ANTHROPIC_BASE_URL: 'https://api.anthropic.com' });
    expect(real.get('worker')?.environment).toMatchObject({ ANTHROPIC_API_KEY: 'sk-ant-real', ANTHROPIC_BASE_URL: 'https://api.anthropic.com' });
  });

  it("runs Redis with the compose file's own arguments", async () => {
    const client = new Redis(stack.redis.url, { maxRetriesPerRequest: 1 });
    try {
      const config = async (name: string) => ((await client.config('GET', name)) as string[])[1];
      expect(await config('appendonly')).toBe('yes');
      expect(await config('appendfsync')).toBe('everysec');
      expect(await config('maxmemory-policy')).toBe('noeviction');
    } finally {
      client.disconnect();
    }
  });

  it("passes every service's healthcheck", async () => {
    for (const name of services.keys()) {
      const replicas = name === 'worker' ? WORKER_REPLICAS : 1;
      for (let replica = 0; replica < replicas; replica += 1) expect(await stack.healthy(name, replica), `${name} #${replica + 1}`).toBe(true);
    }
  });

  it(`serves ${REQUESTS} requests through the gateway with the official SDK, inside the fleet limit, with no 429`, { timeout: LOAD_TIMEOUT_MS }, async () => {
    const gatewayUrl = `http://127.0.0.1:${stack.portOf('gateway', 8080)}`;
    const token = envOf('gateway', 'GATEWAY_TOKENS').split(',')[0]?.split(':')[1] ?? '';
    const client = new Anthropic({ baseURL: gatewayUrl, apiKey: token, maxRetries: 0, timeout: LOAD_TIMEOUT_MS });
    const answers = await Promise.all(
      Array.from({ length: REQUESTS }, async (_, i) => {
        const request = { model: MODEL, max_tokens: MAX_TOKENS, messages: [{ role: 'user' as const, content: `compose wiring ${i}` }] };
        return i % 2 === 0 ? client.messages.create(request) : client.messages.stream(request).finalMessage();
      }),
    );
    expect(answers.filter((answer) => answer.type === 'message' && answer.content.length > 0)).toHaveLength(REQUESTS);

    const mockUrl = `http://127.0.0.1:${stack.portOf('mock-anthropic', Number(envOf('mock-anthropic', 'PORT')))}`;
    const stats = (await (await fetch(`${mockUrl}/_mock/stats`)).json()) as MockStats;
    const limit = Number(envOf('mock-anthropic', 'MOCK_CONCURRENCY')); // the account's limit the fleet must respect
    console.log(
      `compose: ${REQUESTS} requests via gateway, ${WORKER_REPLICAS} workers; mock saw ${stats.messages} calls, max concurrent ${stats.maxConcurrent} (limit ${limit}), 429s ${
        stats.byStatus['429'] ?? 0
      }`,
    );
    expect(stats.messages).toBe(REQUESTS);
    expect(stats.maxConcurrent).toBeLessThanOrEqual(limit);
    expect(stats.byStatus['429'] ?? 0).toBe(0);
    // every replica took part: the scaled service really is several consumers of one queue
    const served = await Promise.all(
      (stack.instances.get('worker') ?? []).map(async (worker) => {
        const metrics = await (await fetch(`${worker.ready.url ?? ''}`)).text();
        return /tollgate_jobs_total\{[^}]*state="completed"[^}]*\} (\d+)/.exec(metrics)?.[1] ?? '0';
      }),
    );
    expect(served.reduce((sum, count) => sum + Number(count), 0)).toBe(REQUESTS);
  });
});
