import Anthropic from '@anthropic-ai/sdk';
import type { MockAnthropic } from '../src/index.js';

export const MODEL = 'claude-haiku-4-5'; // the SDK warns on every call to a deprecated model (sonnet-4-5)
export const API_KEY = 'test-key';

/** The real SDK aimed at the mock; retries off so every attempt is visible. */
export function clientFor(target: { url: string }, apiKey: string = API_KEY): Anthropic {
  return new Anthropic({ baseURL: target.url, apiKey, maxRetries: 0 });
}

/** A small request; `text` sets the prompt (and so the input-token estimate). */
export function request(text = 'Hello there', maxTokens = 256): Anthropic.MessageCreateParamsNonStreaming {
  return { model: MODEL, max_tokens: maxTokens, messages: [{ role: 'user', content: text }] };
}

/** POSTs raw bytes to the mock (for bodies the SDK will not send). */
export async function rawPost(mock: MockAnthropic, path: string, body: string, headers: Record<string, string>): Promise<Response> {
  return fetch(`${mock.url}${path}`, { method: 'POST', body, headers });
}

export const VALID_HEADERS = { 'content-type': 'application/json', 'x-api-key': API_KEY, 'anthropic-version': '2023-06-01' };

/** Sleeps for a server-given wait (e.g. `retry-after`); tests never assert on elapsed time. */
export function sleepMs(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The `retry-after` of a rate-limit error, in milliseconds. */
export function retryAfterMs(error: unknown): number {
  const value = error instanceof Error && 'headers' in error && error.headers instanceof Headers ? error.headers.get('retry-after') : null;
  if (value === null) throw new Error('no retry-after header');
  return Number(value) * 1_000;
}
