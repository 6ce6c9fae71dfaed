/**
 * Scenario 4's clients, one per worker process: the official SDK behind `@tollgate/anthropic` (one fleet-wide
 * limiter with the upstream's concurrency, ITPM and OTPM), or the plain SDK the way people limit it today (a local
 * semaphore with this process's share of the concurrency limit and the SDK's own retries).
 */
import Anthropic from '@anthropic-ai/sdk';
import { LocalSemaphore } from './local-semaphore.js';
import { loadTollgate, type ContenderName } from './contenders.js';
import type { TokenCall, TokenRate, TokenTrialSpec } from './protocol.js';

const MS_PER_MINUTE = 60_000;
/** The mock's token estimate is ceil(chars / 4), the same as the wrapper's local estimate. */
const CHARS_PER_TOKEN = 4;
/** Tells the mock how many tokens the answer has, so every run produces the same output. */
const OUTPUT_TOKENS_HEADER = 'x-mock-output-tokens';
/** The mock accepts any non-empty key. */
export const API_KEY = 'bench-key';

/** One process's Messages client for scenario 4. */
export interface TokenClient {
  /** One Messages call; rejects with the SDK's error when the call fails for good. */
  call(call: TokenCall, index: number): Promise<void>;
  close(): Promise<void>;
}

/** A prompt of exactly `inputTokens` tokens by both estimators, different for every call. */
export function params(call: TokenCall, index: number, model: string): Anthropic.MessageCreateParamsNonStreaming {
  const content = `${index} `.padEnd(call.inputTokens * CHARS_PER_TOKEN, 'x');
  return { model: call.model ?? model, max_tokens: call.maxTokens, messages: [{ role: 'user', content }] };
}

/** Tells the mock the answer's length (scenario 4, fairness). */
export function requestOptions(call: TokenCall): Anthropic.RequestOptions {
  return { headers: { [OUTPUT_TOKENS_HEADER]: String(call.outputTokens) } };
}

async function tollgateClient(spec: TokenTrialSpec, redisUrl: string, name: string): Promise<TokenClient> {
  const tollgate = await loadTollgate();
  if ('error' in tollgate) throw new Error(`@tollgate/limiter: ${tollgate.error}`);
  const { limitAnthropic } = await import('@tollgate/anthropic');
  const rate = (r: TokenRate) => ({ limit: r.perMinute, intervalMs: MS_PER_MINUTE, burst: r.burst });
  const pools = spec.pools;
  const limiter = tollgate.createLimiter({
    redis: redisUrl,
    name,
    concurrency: spec.concurrency,
    ...(pools === undefined
      ? {
          rates: {
            ...(spec.requests === undefined ? {} : { requests: rate(spec.requests) }),
            inputTokens: rate(spec.inputTokens),
            outputTokens: rate(spec.outputTokens),
          },
        }
      : {
          pools: Object.fromEntries(
            Object.entries(pools).map(([pool, p]) => [pool, { requests: rate(p.requests), inputTokens: rate(p.inputTokens), outputTokens: rate(p.outputTokens) }]),
          ),
        }),
  });
  await limiter.ready();
  // with pools, each call takes its permit from the pool of its model (the first pool whose prefix it has)
  const poolFor = (model: string): string => Object.entries(pools ?? {}).find(([, p]) => model.startsWith(p.modelPrefix))?.[0] ?? '';
  const anthropic = limitAnthropic(new Anthropic({ baseURL: spec.mockUrl, apiKey: API_KEY, maxRetries: 0 }), limiter, pools === undefined ? {} : { poolFor });
  return {
    call: async (call, index) => {
      await anthropic.messages.create(params(call, index, spec.model), requestOptions(call));
    },
    close: () => limiter.close(),
  };
}

function plainSdkClient(spec: TokenTrialSpec, localLimit: number): TokenClient {
  const anthropic = new Anthropic({ baseURL: spec.mockUrl, apiKey: API_KEY, maxRetries: spec.sdkMaxRetries });
  const semaphore = new LocalSemaphore(localLimit);
  return {
    call: async (call, index) => {
      const release = await semaphore.acquire(); // held through the SDK's retries, as a wrapper around the call would
      try {
        await anthropic.messages.create(params(call, index, spec.model), requestOptions(call));
      } finally {
        await release();
      }
    },
    close: async () => {},
  };
}

/** tollgate: the limited client; static-split: the plain SDK with `localLimit` slots in this process. */
export async function createTokenClient(contender: ContenderName, spec: TokenTrialSpec, params: { redisUrl: string; name: string; localLimit: number }): Promise<TokenClient> {
  if (contender === 'tollgate') return tollgateClient(spec, params.redisUrl, params.name);
  if (contender === 'static-split') return plainSdkClient(spec, params.localLimit);
  throw new Error(`${contender} has no scenario 4 client`);
}

/** How a failed call is counted: its HTTP status, or `connection` when there was no answer. */
export function failureKind(error: unknown): string {
  if (error instanceof Anthropic.APIError && error.status !== undefined) return String(error.status);
  return error instanceof Anthropic.APIConnectionError ? 'connection' : 'other';
}
