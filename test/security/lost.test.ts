import Anthropic from '@anthropic-ai/sdk';
import { createProducer, type Producer } from '@tollgate/queue';
import { uniqueName } from '@tollgate/test-support';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { eventually, type Fleet } from '../support/fleet.js';
import type { ServiceProcess } from '../support/processes.js';
import { TOKEN_ALPHA, TOKEN_BETA, asTenant, body, json, startExtraGateway, startSecurityFleet } from './support.js';

/** Longer than the test takes to flush: on the old code the waits ended here, with a 504. */
const WAIT_MS = 40_000;

let fleet: Fleet;
let idle: ServiceProcess & { url: string };
let idleProducer: Producer;

beforeAll(async () => {
  fleet = await startSecurityFleet();
  const queue = uniqueName('lost').replace(/:/g, '-');
  idle = await startExtraGateway(fleet, { TOLLGATE_QUEUE: queue, GATEWAY_WAIT_MS: String(WAIT_MS) }); // no worker serves it
  idleProducer = createProducer({ redis: fleet.redis.url, queue });
});
afterAll(async () => {
  await idle?.stop();
  await idleProducer?.close();
  await fleet?.close();
});

describe('Redis lost its data while requests waited', () => {
  it('the waiting requests (JSON and stream) answer 503 api_error "job lost with the queue\'s data; retry", which the SDK retries', async () => {
    const client = new Anthropic({ baseURL: idle.url, apiKey: TOKEN_ALPHA, maxRetries: 0 });
    const plain = client.messages.create(body('lost plain') as unknown as Anthropic.MessageCreateParamsNonStreaming).then(
      () => undefined,
      (error: unknown) => error,
    );
    const streamed = fetch(`${idle.url}/v1/messages`, { method: 'POST', headers: asTenant(TOKEN_BETA), body: json(body('lost stream', { stream: true })) });
    const jobs = async () => Object.values(await idleProducer.counts()).reduce((sum, n) => sum + n, 0);
    expect(await eventually(async () => (await jobs()) === 2, 30_000)).toBe(true); // both wait for their jobs

    const admin = new Redis(fleet.redis.url);
    try {
      await admin.flushall();
    } finally {
      admin.disconnect();
    }

    const error = await plain;
    expect(error).toBeInstanceOf(Anthropic.InternalServerError);
    expect((error as InstanceType<typeof Anthropic.APIError>).status).toBe(503);
    expect((error as InstanceType<typeof Anthropic.APIError>).error).toMatchObject({
      type: 'error',
      error: { type: 'api_error', message: expect.stringMatching(/lost with the queue's data; retry$/) },
    });
    const stream = await streamed;
    expect(stream.status).toBe(503);
    expect(await stream.json()).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringMatching(/lost with the queue's data; retry$/) } });

    // and the fleet serves again on the empty Redis
    const again = await fetch(`${fleet.gatewayUrl}/v1/messages`, { method: 'POST', headers: asTenant(TOKEN_ALPHA), body: json(body('after the flush')) });
    expect(again.status).toBe(200);
  });
});
