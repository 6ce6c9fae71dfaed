import { z } from 'zod';
import type { LimitedAnthropicStats } from '../../src/index.js';

/** The result line a worker prints starts with this. */
export const RESULT_PREFIX = 'result ';

const rate = z.strictObject({ limit: z.number(), intervalMs: z.number().int(), burst: z.number().optional() });

export const callShapeSchema = z.strictObject({
  promptChars: z.number().int().min(4),
  maxTokens: z.number().int().min(1),
  /** `x-mock-output-tokens`: the answer's length (the mock's default range when absent). */
  outputTokens: z.number().int().min(0).optional(),
});
export type CallShape = z.infer<typeof callShapeSchema>;

export const workerConfigSchema = z.strictObject({
  redisUrl: z.string(),
  limiterName: z.string(),
  limiter: z.strictObject({ concurrency: z.number().int().optional(), rates: z.record(z.string(), rate).optional() }),
  wrapper: z.strictObject({ maxAttempts: z.number().int().optional(), backoffBaseMs: z.number().int().optional() }).default({}),
  mockUrl: z.string(),
  apiKey: z.string(),
  model: z.string(),
  calls: z.number().int().min(0),
  parallel: z.number().int().min(1),
  kinds: z.array(z.enum(['create', 'stream', 'messages.stream'])).min(1),
  shapes: z.array(callShapeSchema).min(1),
  /** Calls made before `ready` (not counted in the result), so the process is warm when `go` comes. */
  warmUpCalls: z.number().int().min(0).default(0),
  /** Where this process starts in `shapes`, so processes do not all send the same sizes at once. */
  shapeOffset: z.number().int().min(0).default(0),
});
export type WorkerConfig = z.input<typeof workerConfigSchema>;

export interface WorkerResult {
  succeeded: number;
  errors: string[];
  stats: LimitedAnthropicStats;
  /** Redis times at which this process's fleet-wide pauses took effect. */
  pausedAtMs: number[];
  /** Redis grant time of each permit whose call met a rate-limit 429 (with retry-after). */
  rateLimitedGrantedAtMs: number[];
}
