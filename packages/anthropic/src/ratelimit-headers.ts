/** Limiter dimension → the `anthropic-ratelimit-<name>-*` header family that reports it. */
export const HEADER_FAMILY_BY_DIMENSION = {
  requests: 'requests',
  inputTokens: 'input-tokens',
  outputTokens: 'output-tokens',
} as const;
export type AnthropicDimension = keyof typeof HEADER_FAMILY_BY_DIMENSION;
export const ANTHROPIC_DIMENSIONS = Object.keys(HEADER_FAMILY_BY_DIMENSION) as AnthropicDimension[];

/**
 * The API rounds token `remaining` to the nearest 1,000 [DOC]; half of that is added back so rounding alone never
 * lowers a bucket (observe only ever lowers).
 */
export const TOKEN_REMAINING_ROUNDING_SLACK = 500;

export interface ObservedRemaining {
  remaining: number;
  resetMs?: number;
}

/**
 * Reads `anthropic-ratelimit-*-remaining` and `-reset` for the given dimensions; dimensions without a header are
 * left out. A token figure above 0 gets {@link TOKEN_REMAINING_ROUNDING_SLACK} added.
 */
export function readRateLimitHeaders(
  headers: Headers,
  dimensions: readonly AnthropicDimension[],
  nowMs: number = Date.now(),
): Partial<Record<AnthropicDimension, ObservedRemaining>> {
  const observed: Partial<Record<AnthropicDimension, ObservedRemaining>> = {};
  for (const dimension of dimensions) {
    const family = HEADER_FAMILY_BY_DIMENSION[dimension];
    const raw = headers.get(`anthropic-ratelimit-${family}-remaining`);
    if (raw === null) continue;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0) continue;
    const remaining = dimension === 'requests' || value === 0 ? value : value + TOKEN_REMAINING_ROUNDING_SLACK;
    const resetAt = Date.parse(headers.get(`anthropic-ratelimit-${family}-reset`) ?? '');
    observed[dimension] = Number.isNaN(resetAt) ? { remaining } : { remaining, resetMs: Math.max(0, resetAt - nowMs) };
  }
  return observed;
}
