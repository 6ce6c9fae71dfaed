import { PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN, describeZodError } from '@tollgate/limiter';
import { z } from 'zod';
import { InvalidRequestError } from './errors.js';

/** Longest model name accepted; real ones are under 64 characters. */
export const MODEL_NAME_LENGTH_MAX = 256;
/** Largest `max_tokens` any current model accepts; the upstream applies each model's own cap. */
export const MAX_TOKENS_MAX = 128_000;
/** Turns in one request; far above anything a real conversation sends. */
export const MESSAGES_MAX = 100_000;
/** Tenant names go into logs and job data: keep them plain. */
export const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
/** The version of the job payload; a changed shape gets a new number so old and new workers can share a queue. */
export const JOB_DATA_VERSION = 1;

/** A content block: its `type` is checked here, its fields by the upstream (new block types appear often). */
const contentBlockSchema = z.looseObject({ type: z.string().min(1) });

const messageSchema = z.strictObject({
  role: z.enum(['user', 'assistant']),
  content: z.union([z.string(), z.array(contentBlockSchema).min(1)]),
});

const systemSchema = z.union([z.string(), z.array(z.looseObject({ type: z.literal('text'), text: z.string() }))]);

/**
 * A Messages API request (anthropic-api.md §1.1): the fields SDK 1.x sends, with the required ones checked exactly and
 * an unknown top-level field refused, as the API refuses it ("Extra inputs are not permitted"). Nested blocks are
 * checked loosely: the upstream owns their details.
 */
export const messageParamsSchema = z.strictObject({
  model: z.string().min(1).max(MODEL_NAME_LENGTH_MAX),
  max_tokens: z.number().int().min(1).max(MAX_TOKENS_MAX),
  messages: z.array(messageSchema).min(1).max(MESSAGES_MAX),
  system: systemSchema.optional(),
  stream: z.boolean().optional(),
  metadata: z.looseObject({ user_id: z.string().nullable().optional() }).optional(),
  stop_sequences: z.array(z.string()).optional(),
  tools: z.array(z.looseObject({})).optional(),
  tool_choice: z.looseObject({ type: z.string().min(1) }).optional(),
  thinking: z.looseObject({ type: z.string().min(1) }).optional(),
  output_config: z.looseObject({}).optional(),
  service_tier: z.enum(['auto', 'standard_only']).optional(),
  speed: z.string().optional(),
  cache_control: z.looseObject({ type: z.string().min(1) }).nullable().optional(),
  container: z.union([z.string(), z.looseObject({})]).nullable().optional(),
  inference_geo: z.string().nullable().optional(),
  diagnostics: z.looseObject({}).nullable().optional(),
});

/** A validated Messages request. */
export type MessageParams = z.infer<typeof messageParamsSchema>;

export const prioritySchema = z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX);

/** What a job carries in Redis. `params` is the caller's request as sent (validated, key order kept). */
export const jobDataSchema = z.strictObject({
  v: z.literal(JOB_DATA_VERSION),
  params: messageParamsSchema,
  tenant: z.string().regex(TENANT_PATTERN).nullable(),
  priority: prioritySchema.default(PRIORITY_DEFAULT),
});

export type JobData = z.infer<typeof jobDataSchema>;

/**
 * Validates a Messages request. Returns the caller's own object (not zod's copy) so that the body the upstream sees
 * keeps the caller's key order.
 * @throws {@link InvalidRequestError} naming each bad field, e.g. `max_tokens: Too small: expected number to be >=1 (got 0)`.
 */
export function validateMessageParams(input: unknown): MessageParams {
  const result = messageParamsSchema.safeParse(input);
  if (!result.success) throw new InvalidRequestError(describeZodError(result.error, input), { cause: result.error });
  return input as MessageParams; // validated above; the cast keeps the original object
}

/** Parses a job's data as the worker receives it. @throws {@link InvalidRequestError}. */
export function parseJobData(input: unknown): JobData {
  const result = jobDataSchema.safeParse(input);
  if (!result.success) throw new InvalidRequestError(`invalid job data: ${describeZodError(result.error, input)}`, { cause: result.error });
  return result.data;
}
