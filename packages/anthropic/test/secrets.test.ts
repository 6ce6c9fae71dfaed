import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitAnthropic } from '../src/index.js';
import { dumpRedis, thrown } from '@tollgate/test-support';
import { clientFor, limiterFor, request, startStack, type Stack } from './support.js';

const CANARY_KEY = `sk-ant-canary-${randomBytes(12).toString('hex')}`;
const PROMPT_CANARY = `prompt-canary-${randomBytes(8).toString('hex')}`;
const RATE = { limit: 1_000_000, intervalMs: 60_000 };

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ apiKeys: [CANARY_KEY] });
});
afterAll(() => stack.close());

describe('secrets stay out of logs and Redis', () => {
  it('a canary API key (and the prompt) never appear in captured logs or in any Redis value', async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString('utf8'));
        done();
      },
    });
    const logger = pino({ level: 'trace' }, sink);
    const limiter = await limiterFor(stack.redis.url, { concurrency: 2, rates: { requests: RATE, inputTokens: RATE, outputTokens: RATE } });
    try {
      const anthropic = limitAnthropic(clientFor(stack.mock.url, CANARY_KEY), limiter, { logger, backoffBaseMs: 10, observeIntervalMs: 0 });
      const prompt = { ...request(), messages: [{ role: 'user' as const, content: PROMPT_CANARY }] };
      stack.mock.setConfig({
        faults: {
          schedule: [
            { nth: 1, fault: '500' },
            { nth: 3, fault: '529' },
          ],
        },
      });
      await anthropic.messages.create(prompt); // 500, then 200
      const stream = await anthropic.messages.create({ ...prompt, stream: true }); // 529, then a stream
      for await (const _event of stream) {
        // drain
      }
      await thrown(() => anthropic.messages.create(prompt, { headers: { 'x-mock-fault': 'spend_cap' } }));
      await thrown(() => anthropic.messages.create({ ...prompt, model: 'claude-no-such-model' }));
    } finally {
      await limiter.close();
    }
    const logs = lines.join('');
    expect(lines.length).toBeGreaterThanOrEqual(4); // the failures above were logged
    expect(logs).not.toContain(CANARY_KEY);
    expect(logs).not.toContain(PROMPT_CANARY);
    const dump = await dumpRedis(stack.redis.url);
    expect(dump.length).toBeGreaterThan(0);
    expect(dump).not.toContain(CANARY_KEY);
    expect(dump).not.toContain(PROMPT_CANARY);
  });
});
