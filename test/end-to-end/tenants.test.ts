import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonOf, runTollgate, watchTollgate } from '../support/cli.js';
import { MODEL, eventually, startFleet, type Fleet } from '../support/fleet.js';
import { stopAllServices, type ServiceProcess } from '../support/processes.js';

/** Jobs each worker holds at once (WORKER_CONCURRENCY): with two workers, what the fleet has in flight. */
const WORKER_SLOTS = 3;
/** Alpha's jobs enqueued once the workers are full, and beta's (through the gateway, beta's token). */
const ALPHA_WAITING = 10;
const BETA_WAITING = 4;
const BETA_TOKEN = 'tollgate-tenants-test-beta-token';
/** Every call hangs at the mock for this long (the mock's maximum): jobs stay in flight for the whole test. */
const HANG_MS = 600_000;
/** A killed worker's lock (3 s in the fleet) must expire and the stalled check run; a deadline, not a measurement. */
const STALLED_WITHIN_MS = 30_000;

let fleet: Fleet;
let env: Record<string, string>;

interface TenantRow {
  tenant: string;
  inFlight: number;
  waiting: number;
}
interface StatusJson {
  queue: { counts: Record<string, number> };
  tenants: { account: string; pool: string; rows: TenantRow[] };
}

const request = (tag: string) => ({ model: MODEL, max_tokens: 8, messages: [{ role: 'user' as const, content: `tenants ${tag}` }] });
const status = async () => jsonOf<StatusJson>(await runTollgate(['status', '--json'], env));

beforeAll(async () => {
  fleet = await startFleet({
    workers: 2,
    concurrency: 2 * WORKER_SLOTS + 2, // the limiter never holds a job back: in flight is what the workers hold
    gateway: true,
    gatewayEnv: { GATEWAY_TOKENS: `beta:${BETA_TOKEN}` },
    workerEnv: { WORKER_CONCURRENCY: String(WORKER_SLOTS) },
    mockEnv: { MOCK_LATENCY_MS: String(HANG_MS) },
  });
  env = { REDIS_URL: fleet.redis.url, TOLLGATE_NAME: fleet.limiterName, TOLLGATE_QUEUE: fleet.queue };
});

afterAll(async () => {
  await fleet?.close();
  await stopAllServices();
});

describe('tollgate status per tenant, against a live fleet (two worker processes, the gateway, the mock, a real Redis)', () => {
  it("--json, the text screen and --watch show each tenant in flight and waiting as the fleet runs them; a killed worker's jobs go back to waiting", async () => {
    // alpha (a Node producer) fills both workers: 6 in flight; then 10 more of alpha and 4 of beta (the gateway) wait
    for (let i = 0; i < 2 * WORKER_SLOTS; i++) await fleet.producer.enqueue(request(`alpha running ${i}`), { tenant: 'alpha' });
    expect(await eventually(async () => (await fleet.producer.counts()).active === 2 * WORKER_SLOTS, STALLED_WITHIN_MS)).toBe(true);
    for (let i = 0; i < ALPHA_WAITING; i++) await fleet.producer.enqueue(request(`alpha waiting ${i}`), { tenant: 'alpha' });
    for (let i = 0; i < BETA_WAITING; i++) {
      const response = await fetch(`${fleet.gatewayUrl}/v1/jobs`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${BETA_TOKEN}` },
        body: JSON.stringify(request(`beta ${i}`)),
      });
      expect(response.status).toBe(202);
    }
    const { queue, tenants } = await status();
    expect(queue.counts.active).toBe(2 * WORKER_SLOTS);
    expect(tenants).toEqual({
      account: fleet.limiterName,
      pool: 'default',
      rows: [
        { tenant: 'alpha', inFlight: 2 * WORKER_SLOTS, waiting: ALPHA_WAITING },
        { tenant: 'beta', inFlight: 0, waiting: BETA_WAITING },
      ],
    });

    const text = await runTollgate(['status'], env);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`per tenant (account ${fleet.limiterName}, pool default)`);
    expect(text.stdout).toMatch(/tenant +in flight +waiting/);
    expect(text.stdout).toMatch(new RegExp(`alpha +${2 * WORKER_SLOTS} +${ALPHA_WAITING}\\n`));
    expect(text.stdout).toMatch(new RegExp(`beta +0 +${BETA_WAITING}(\\n|$)`));

    let frames = 0;
    const watched = await watchTollgate(['status', '--watch', '--interval', '200ms', '--json'], env, () => ++frames === 2);
    expect(watched.code).toBe(0);
    for (const line of watched.stdout.trim().split('\n')) expect((JSON.parse(line) as StatusJson).tenants.rows).toEqual(tenants.rows);

    // the workers' /metrics carry the same numbers with a tenant label
    const survivor = fleet.workers[1] as ServiceProcess;
    const metrics = await (await fetch(survivor.ready.url ?? '')).text();
    const labels = `account="${fleet.limiterName}",pool="default"`;
    expect(metrics).toContain(`tollgate_tenant_jobs_in_flight{${labels},tenant="alpha"} ${2 * WORKER_SLOTS}`);
    expect(metrics).toContain(`tollgate_tenant_jobs_waiting{${labels},tenant="alpha"} ${ALPHA_WAITING}`);
    expect(metrics).toContain(`tollgate_tenant_jobs_waiting{${labels},tenant="beta"} ${BETA_WAITING}`);

    // kill -9 one worker: its 3 jobs stay in BullMQ's active list until the stalled check hands them back; the
    // survivor is full, so they wait, and nothing is counted in flight that no worker holds
    const victim = fleet.workers[0] as ServiceProcess;
    victim.signal('SIGKILL');
    await victim.exited;
    let after = await status();
    expect(
      await eventually(
        async () => {
          after = await status();
          return after.queue.counts.active === WORKER_SLOTS;
        },
        STALLED_WITHIN_MS,
        250,
      ),
    ).toBe(true);
    expect(after.tenants.rows).toEqual([
      { tenant: 'alpha', inFlight: WORKER_SLOTS, waiting: ALPHA_WAITING + WORKER_SLOTS },
      { tenant: 'beta', inFlight: 0, waiting: BETA_WAITING },
    ]);
  });
});
