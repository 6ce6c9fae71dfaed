import { PRIORITY_DEFAULT, PRIORITY_MAX, PRIORITY_MIN } from '@tollgate/limiter';
import { describeZodError, toError } from '@tollgate/limiter/internal';
import type Anthropic from '@anthropic-ai/sdk';
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
export const JOB_DATA_VERSION = 2;

/**
 * A Messages request as Tollgate reads it: only what the limiter and the queue need (`model`, `max_tokens` for the
 * output reservation, `messages` for the input estimate, `stream`). Every other field, and every field inside a message,
 * passes through untouched: the upstream judges them (a gateway must never be stricter than the API behind it), and its
 * error comes back to the caller.
 */
export const messageParamsSchema = z.looseObject({
  model: z.string().min(1).max(MODEL_NAME_LENGTH_MAX),
  max_tokens: z.number().int().min(1).max(MAX_TOKENS_MAX),
  messages: z.array(z.looseObject({})).min(1).max(MESSAGES_MAX),
  stream: z.boolean().optional(),
});

/** A count_tokens request: `model` and `messages` (the estimate's input); no `max_tokens`, never streamed. */
export const countTokensParamsSchema = z.looseObject({
  model: z.string().min(1).max(MODEL_NAME_LENGTH_MAX),
  messages: z.array(z.looseObject({})).min(1).max(MESSAGES_MAX),
});

/** A validated Messages request (the SDK's type: the fields Tollgate reads are checked, the rest is the caller's). */
export type MessageParams = Anthropic.MessageCreateParams;
export type CountTokensParams = Anthropic.MessageCountTokensParams;

/** A models request: one model (`id`) or the list (`query`: `limit`, `after_id`, `before_id` as sent). */
export const modelsParamsSchema = z.strictObject({
  id: z.string().min(1).max(MODEL_NAME_LENGTH_MAX).nullable(),
  query: z.partialRecord(z.enum(['limit', 'after_id', 'before_id']), z.string().max(MODEL_NAME_LENGTH_MAX)),
});
export type ModelsParams = z.infer<typeof modelsParamsSchema>;

/** The upstream endpoints a job can call. */
export const JOB_ROUTES = ['messages', 'count_tokens', 'models'] as const;
export type JobRoute = (typeof JOB_ROUTES)[number];

/** Longest API header value carried (`anthropic-beta` lists a few names; real ones are far shorter). */
export const API_HEADER_LENGTH_MAX = 1_024;
/** Visible ASCII and spaces: nothing that could split a header. */
const HEADER_VALUE_PATTERN = /^[\x20-\x7e]*$/;
const apiHeaderValue = z.string().min(1).max(API_HEADER_LENGTH_MAX).regex(HEADER_VALUE_PATTERN, 'visible ASCII only');

/** The request headers that travel with a job and go on its upstream call; the upstream judges their values. */
export const API_HEADER_NAMES = ['anthropic-beta', 'anthropic-version'] as const;
export const apiHeadersSchema = z.strictObject({
  'anthropic-beta': apiHeaderValue.optional(),
  'anthropic-version': apiHeaderValue.optional(),
});
export type ApiHeaders = z.infer<typeof apiHeadersSchema>;

export const prioritySchema = z.number().int().min(PRIORITY_MIN).max(PRIORITY_MAX);

/** Jobs of the first payload version: the request as a JSON object (still read, so old producers keep working mid-deploy). */
const jobDataV1Schema = z.strictObject({
  v: z.literal(1),
  params: z.looseObject({}),
  tenant: z.string().regex(TENANT_PATTERN).nullable(),
  priority: prioritySchema.default(PRIORITY_DEFAULT),
});

/**
 * What a job carries in Redis. `body` is the request's JSON text exactly as the caller sent it (key order, spacing and
 * number spelling kept); the worker sends these bytes upstream.
 */
export const jobDataSchema = z.strictObject({
  v: z.literal(JOB_DATA_VERSION),
  route: z.enum(JOB_ROUTES),
  body: z.string().min(2),
  headers: apiHeadersSchema,
  tenant: z.string().regex(TENANT_PATTERN).nullable(),
  priority: prioritySchema.default(PRIORITY_DEFAULT),
});

export type JobData = z.infer<typeof jobDataSchema>;

/** A job as the worker runs it. */
export interface ParsedJob {
  route: JobRoute;
  /** The body parsed, for the estimate and the SDK call's own fields. */
  params: Record<string, unknown>;
  /** The exact text to send. */
  body: string;
  headers: ApiHeaders;
  tenant: string | null;
  priority: number;
}

function invalid(prefix: string, error: z.ZodError, input: unknown): InvalidRequestError {
  return new InvalidRequestError(`${prefix}${describeZodError(error, input)}`, { cause: error });
}

/** Checks the fields Tollgate reads for `route`. @throws {@link InvalidRequestError} naming the field. */
function checkParams(route: JobRoute, input: unknown, prefix = ''): Record<string, unknown> {
  const schema = route === 'messages' ? messageParamsSchema : route === 'count_tokens' ? countTokensParamsSchema : modelsParamsSchema;
  const result = schema.safeParse(input);
  if (!result.success) throw invalid(prefix, result.error, input);
  return input as Record<string, unknown>; // validated above; the caller's own object, not zod's copy
}

/**
 * A request body ready for the queue: the JSON text to send and its parsed form. Build one with
 * {@link RequestBody.fromText} (the bytes a caller sent, e.g. the gateway's) or {@link RequestBody.fromParams} (a Node
 * caller's object).
 */
export class RequestBody {
  private constructor(
    readonly route: JobRoute,
    readonly text: string,
    readonly params: Record<string, unknown>,
  ) {}

  /**
   * Parses and checks JSON text; the text itself is kept byte for byte.
   * @throws {@link InvalidRequestError} for bad JSON or a bad field Tollgate reads.
   */
  static fromText(text: string, route: JobRoute = 'messages'): RequestBody {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (error) {
      throw new InvalidRequestError(`body: invalid JSON (${toError(error).message})`, { cause: error });
    }
    return new RequestBody(route, text, checkParams(route, parsed));
  }

  /** Text and the value `JSON.parse(text)` gave (a gateway's body parser): checks the value, keeps the text. @throws {@link InvalidRequestError}. */
  static fromParsed(text: string, parsed: unknown, route: JobRoute = 'messages'): RequestBody {
    return new RequestBody(route, text, checkParams(route, parsed));
  }

  /** Checks a caller's object and serializes it in its own key order. @throws {@link InvalidRequestError}. */
  static fromParams(params: unknown, route: JobRoute = 'messages'): RequestBody {
    const checked = checkParams(route, params);
    return new RequestBody(route, JSON.stringify(checked), checked);
  }
}

/**
 * Validates a Messages request. Returns the caller's own object (not zod's copy) so that the body the upstream sees
 * keeps the caller's key order.
 * @throws {@link InvalidRequestError} naming each bad field, e.g. `max_tokens: Too small: expected number to be >=1 (got 0)`.
 */
export function validateMessageParams(input: unknown): MessageParams {
  return checkParams('messages', input) as unknown as MessageParams;
}

/** Parses a job's data as the worker receives it (either payload version). @throws {@link InvalidRequestError}. */
export function parseJobData(input: unknown): ParsedJob {
  const v1 = jobDataV1Schema.safeParse(input);
  if (v1.success) {
    const { params, tenant, priority } = v1.data;
    return { route: 'messages', params: checkParams('messages', params, 'invalid job data: '), body: JSON.stringify(params), headers: {}, tenant, priority };
  }
  const result = jobDataSchema.safeParse(input);
  if (!result.success) throw invalid('invalid job data: ', result.error, input);
  const { route, body, headers, tenant, priority } = result.data;
  let params: unknown;
  try {
    params = JSON.parse(body);
  } catch {
    throw new InvalidRequestError('invalid job data: body: invalid JSON');
  }
  return { route, params: checkParams(route, params, 'invalid job data: '), body, headers, tenant, priority };
}
