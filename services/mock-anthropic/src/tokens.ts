import { invalidRequest, type ApiErrorSpec } from './errors.js';

/** The default estimate: one token per 4 characters of text [INF]. */
export const CHARS_PER_TOKEN = 4;
/** Keys whose string values are structure, not text, and so are not counted. */
const STRUCTURAL_KEYS = new Set(['type', 'role', 'cache_control', 'media_type', 'tool_use_id', 'id']);

/** Sums the lengths of all string leaves of `value`, skipping structural keys. */
function textChars(value: unknown): number {
  if (typeof value === 'string') return value.length;
  if (Array.isArray(value)) return value.reduce((sum: number, item: unknown) => sum + textChars(item), 0);
  if (value !== null && typeof value === 'object') {
    let sum = 0;
    for (const [key, item] of Object.entries(value)) if (!STRUCTURAL_KEYS.has(key)) sum += textChars(item);
    return sum;
  }
  return 0;
}

/** The estimator used by admission and count_tokens: ceil(chars / 4) over messages, system and tools. */
export function estimateInputTokens(body: Record<string, unknown>): number {
  const chars = textChars(body.messages) + textChars(body.system) + textChars(body.tools);
  return Math.ceil(chars / CHARS_PER_TOKEN);
}

/** Token counts forced by the `x-mock-*` request headers; absent headers stay undefined. */
export interface TokenOverrides {
  inputTokens?: number;
  outputTokens?: number;
  cacheReadTokens?: number;
  cacheWriteTokens?: number;
}

const OVERRIDE_HEADERS = {
  inputTokens: 'x-mock-input-tokens',
  outputTokens: 'x-mock-output-tokens',
  cacheReadTokens: 'x-mock-cache-read',
  cacheWriteTokens: 'x-mock-cache-write',
} as const satisfies Record<keyof TokenOverrides, string>;

const NON_NEGATIVE_INTEGER = /^\d{1,12}$/;

/** Reads the override headers; a malformed value is a 400 naming the header. */
export function parseTokenOverrides(headers: Record<string, string | string[] | undefined>): TokenOverrides | ApiErrorSpec {
  const overrides: TokenOverrides = {};
  for (const [field, header] of Object.entries(OVERRIDE_HEADERS) as [keyof TokenOverrides, string][]) {
    const raw = headers[header];
    if (raw === undefined) continue;
    if (typeof raw !== 'string' || !NON_NEGATIVE_INTEGER.test(raw)) {
      return invalidRequest(`${header}: must be a non-negative integer`);
    }
    overrides[field] = Number(raw);
  }
  return overrides;
}

/** The prompt as usage reports it: uncached input plus cache reads and writes. */
export interface InputUsage {
  inputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  /** What count_tokens returns and admission estimates: all prompt tokens. */
  totalTokens: number;
}

/**
 * Splits the prompt into usage fields. Without `x-mock-input-tokens` the uncached part is the estimate minus the
 * cache reads and writes; with it, that header is the uncached part.
 */
export function inputUsage(body: Record<string, unknown>, overrides: TokenOverrides): InputUsage {
  const cacheReadTokens = overrides.cacheReadTokens ?? 0;
  const cacheWriteTokens = overrides.cacheWriteTokens ?? 0;
  const inputTokens = overrides.inputTokens ?? Math.max(0, estimateInputTokens(body) - cacheReadTokens - cacheWriteTokens);
  return { inputTokens, cacheReadTokens, cacheWriteTokens, totalTokens: inputTokens + cacheReadTokens + cacheWriteTokens };
}
