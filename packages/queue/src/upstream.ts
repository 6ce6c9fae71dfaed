import { z } from 'zod';

/** Upstream response headers that travel back to the caller: the upstream's request id and its rate-limit figures. */
export const RELAYED_HEADER_PATTERN = /^(?:request-id|anthropic-ratelimit-[a-z0-9-]+)$/;
/** Headers relayed at most: far above the dozen the API sends. */
const RELAYED_HEADERS_MAX = 64;

/** What the worker saw of the upstream call that answered a job. */
export const upstreamMetaSchema = z.strictObject({
  /** The relayed headers ({@link RELAYED_HEADER_PATTERN}), lower-case names. */
  headers: z.record(z.string(), z.string()),
  /** The limiter the call's permit came from (the account), when the worker knows it. */
  account: z.string().nullable(),
  /** Worker clock: from the start of the job's attempt to now (the answer, or a stream's first event). */
  elapsedMs: z.number().min(0),
  /** Worker clock: from the start of the attempt to the moment its answering upstream request was sent (permit wait and retries). */
  waitedMs: z.number().min(0),
});
export type UpstreamMeta = z.infer<typeof upstreamMetaSchema>;

/** What a completed job returns (BullMQ's `returnvalue`): the upstream's answer and how it was obtained. */
export const jobResultSchema = z.strictObject({
  v: z.literal(2),
  answer: z.unknown(),
  upstream: upstreamMetaSchema,
});
export type JobResult = z.infer<typeof jobResultSchema>;

const NO_UPSTREAM: UpstreamMeta = { headers: {}, account: null, elapsedMs: 0, waitedMs: 0 };

/** Reads a job's return value; a first-version job returned the bare Message. */
export function decodeResult(returnvalue: unknown): JobResult {
  const parsed = jobResultSchema.safeParse(returnvalue);
  return parsed.success ? parsed.data : { v: 2, answer: returnvalue, upstream: NO_UPSTREAM };
}

/** The relayed subset of a response's headers. */
export function relayedHeaders(headers: Headers | null | undefined): Record<string, string> {
  const kept: Record<string, string> = {};
  if (headers === null || headers === undefined) return kept;
  let count = 0;
  for (const [name, value] of headers) {
    if (!RELAYED_HEADER_PATTERN.test(name) || count >= RELAYED_HEADERS_MAX) continue;
    kept[name] = value;
    count += 1;
  }
  return kept;
}
