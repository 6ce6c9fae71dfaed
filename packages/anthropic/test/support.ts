import Anthropic from '@anthropic-ai/sdk';
import { createLimiter, type Limiter, type LimiterOptions } from '@tollgate/limiter';
import { startMockAnthropic, type MockAnthropic, type MockOptions } from '@tollgate/mock-anthropic';
import { startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { expect, vi } from 'vitest';

/** A current model the mock knows (deprecated ones make the SDK warn on every call). */
export const MODEL = 'claude-haiku-4-5';
export const API_KEY = 'test-key';

/** The real SDK aimed at the mock, retries off: the wrapper does them. */
export function clientFor(baseURL: string, apiKey: string = API_KEY): Anthropic {
  return new Anthropic({ baseURL, apiKey, maxRetries: 0 });
}

/** A limiter with a name of its own on the test's Redis. */
export async function limiterFor(redisUrl: string, options: Omit<LimiterOptions, 'redis' | 'name'>): Promise<Limiter> {
  const limiter = createLimiter({ redis: redisUrl, name: uniqueName('anthropic-test'), ...options });
  await limiter.ready();
  return limiter;
}

/** A request of about `promptChars / 4` input tokens. */
export function request(promptChars = 40, maxTokens = 64): Anthropic.MessageCreateParamsNonStreaming {
  return { model: MODEL, max_tokens: maxTokens, messages: [{ role: 'user', content: 'a'.repeat(promptChars) }] };
}

/** Sum of all answers the mock counted (each HTTP answer once, whatever its status). */
export function answers(byStatus: Record<string, number>): number {
  return Object.values(byStatus).reduce((sum, count) => sum + count, 0);
}

/** Bound on waiting for the mock to see an aborted call's connection close (a deadline, not a measurement). */
const UPSTREAM_CLOSE_TIMEOUT_MS = 5_000;

/** Every permit is back, and the upstream has no call left running (an aborted one ends when its socket closes). */
export async function expectAllEnded(limiter: Limiter, mock: MockAnthropic): Promise<void> {
  expect((await limiter.snapshot()).inFlight).toBe(0);
  await vi.waitFor(() => expect(mock.stats().inFlight).toBe(0), { timeout: UPSTREAM_CLOSE_TIMEOUT_MS });
}

/** A test file's Redis and mock upstream, and the limiters made on it. */
export interface Stack {
  redis: TestRedis;
  mock: MockAnthropic;
  /** A limiter of its own on this Redis, closed by `close()`. */
  limiter(options: Omit<LimiterOptions, 'redis' | 'name'>): Promise<Limiter>;
  /** Between tests: the mock's counters zeroed and its faults off. */
  resetMock(): void;
  close(): Promise<void>;
}

export async function startStack(mockOptions: MockOptions = {}): Promise<Stack> {
  const redis = await startRedis();
  const mock = await startMockAnthropic(mockOptions);
  const limiters: Limiter[] = [];
  return {
    redis,
    mock,
    limiter: async (options) => {
      const limiter = await limiterFor(redis.url, options);
      limiters.push(limiter);
      return limiter;
    },
    resetMock: () => {
      mock.reset();
      mock.setConfig({ faults: {} });
    },
    close: async () => {
      await Promise.all(limiters.map((limiter) => limiter.close()));
      await mock.close();
      await redis.close();
    },
  };
}
