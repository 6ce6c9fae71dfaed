import { authenticationError, invalidRequest, notFound, type ApiErrorSpec } from './errors.js';
import type { ModelSpec } from './options.js';

type Headers = Record<string, string | string[] | undefined>;

/** The `anthropic-version` values the SDKs send; both are accepted (anthropic-api.md §1.1). */
export const API_VERSIONS = ['2023-06-01', '2026-10-21'] as const;
export type ApiVersion = (typeof API_VERSIONS)[number];
const STRICT_VERSION: ApiVersion = '2026-10-21';

const SAMPLING_FIELDS = ['temperature', 'top_p', 'top_k'] as const;
/** Body fields of SDK 1.x's `MessageCreateParams` (anthropic-api.md §1.1), plus the sampling fields 2023-06-01 takes. */
const MESSAGES_FIELDS: ReadonlySet<string> = new Set([
  'model',
  'max_tokens',
  'messages',
  'system',
  'stream',
  'metadata',
  'stop_sequences',
  'tools',
  'tool_choice',
  'thinking',
  'output_config',
  'service_tier',
  'speed',
  'cache_control',
  'container',
  'inference_geo',
  'diagnostics',
  ...SAMPLING_FIELDS,
]);
const COUNT_TOKENS_FIELDS: ReadonlySet<string> = new Set([
  'model',
  'messages',
  'system',
  'tools',
  'tool_choice',
  'thinking',
  'output_config',
  'cache_control',
  'speed',
  ...SAMPLING_FIELDS,
]);
/**
 * Body fields only beta requests take (SDK 1.14's `BetaMessageCreateParams` / `BetaMessageCountTokensParams`). The API
 * refuses them without an `anthropic-beta` header like any unknown field; which beta unlocks which field is not
 * modelled: any `anthropic-beta` header unlocks them all [INF].
 */
const BETA_MESSAGES_FIELDS: ReadonlySet<string> = new Set([
  'billing_policy',
  'compaction',
  'context_management',
  'fallback_credit_token',
  'fallbacks',
  'mcp_servers',
  'output_format',
  'thread',
]);
const BETA_COUNT_TOKENS_FIELDS: ReadonlySet<string> = new Set(['billing_policy', 'compaction', 'context_management', 'mcp_servers', 'output_format']);
/** The header that names the betas a request uses (the SDK's `betas` parameter). */
export const BETA_HEADER = 'anthropic-beta';
const ROLES = new Set(['user', 'assistant']);

export type ApiRoute = 'messages' | 'count_tokens';

export function isApiError(value: unknown): value is ApiErrorSpec {
  return typeof value === 'object' && value !== null && 'status' in value && 'type' in value && 'message' in value;
}

function header(headers: Headers, name: string): string | undefined {
  const value = headers[name];
  return typeof value === 'string' ? value : undefined;
}

const BEARER_PREFIX = /^bearer\s+/i;

/** Check 2: `x-api-key` wins over `Authorization: Bearer`; with a key list, unknown keys are refused. */
export function authenticate(headers: Headers, apiKeys: ReadonlySet<string> | undefined): { apiKey: string } | ApiErrorSpec {
  const xApiKey = header(headers, 'x-api-key');
  const authorization = header(headers, 'authorization');
  const bearer = authorization !== undefined && BEARER_PREFIX.test(authorization) ? authorization.replace(BEARER_PREFIX, '') : '';
  if (xApiKey !== undefined && xApiKey !== '') {
    return apiKeys === undefined || apiKeys.has(xApiKey) ? { apiKey: xApiKey } : authenticationError('invalid x-api-key');
  }
  if (bearer !== '') {
    return apiKeys === undefined || apiKeys.has(bearer) ? { apiKey: bearer } : authenticationError('Invalid bearer token');
  }
  return authenticationError('x-api-key header is required');
}

/** Whether the request names at least one beta (`anthropic-beta: a,b`). */
export function usesBetas(headers: Headers): boolean {
  const value = header(headers, BETA_HEADER);
  return value !== undefined && value.split(',').some((name) => name.trim() !== '');
}

/** Check 3: a known `anthropic-version`. */
export function checkVersion(headers: Headers): ApiVersion | ApiErrorSpec {
  const version = header(headers, 'anthropic-version');
  if (version === undefined) return invalidRequest('anthropic-version: header is required');
  const known = API_VERSIONS.find((v) => v === version);
  return known ?? invalidRequest(`anthropic-version: "${version}" is not a valid version`);
}

/** Check 4a: the body is a JSON object. */
export function parseJsonBody(raw: unknown): Record<string, unknown> | ApiErrorSpec {
  if (typeof raw !== 'string' || raw === '') return invalidRequest('There was an error parsing the body: the body is empty.');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (error) {
    // The parse failure is the answer: a 400 naming the problem, never a 500.
    return invalidRequest(`There was an error parsing the body: ${error instanceof SyntaxError ? error.message : 'invalid JSON'}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return invalidRequest('Input should be a valid dictionary');
  return parsed as Record<string, unknown>;
}

/** A request that passed checks 4–6. */
export interface ValidRequest {
  modelId: string;
  model: ModelSpec;
  /** 0 for count_tokens. */
  maxTokens: number;
  stream: boolean;
}

function checkMessages(messages: unknown, version: ApiVersion): ApiErrorSpec | undefined {
  if (messages === undefined) return invalidRequest('messages: Field required');
  if (!Array.isArray(messages)) return invalidRequest('messages: Input should be a valid list');
  if (messages.length === 0) return invalidRequest('messages: List should have at least 1 item after validation, not 0');
  for (const [i, message] of messages.entries()) {
    if (typeof message !== 'object' || message === null) return invalidRequest(`messages.${i}: Input should be a valid dictionary`);
    const { role, content } = message as Record<string, unknown>;
    if (role === undefined) return invalidRequest(`messages.${i}.role: Field required`);
    if (typeof role !== 'string' || !ROLES.has(role)) return invalidRequest(`messages.${i}.role: Input should be 'user' or 'assistant'`);
    if (content === undefined) return invalidRequest(`messages.${i}.content: Field required`);
    if (typeof content !== 'string' && !Array.isArray(content)) return invalidRequest(`messages.${i}.content: Input should be a valid list`);
    if (version === STRICT_VERSION && Array.isArray(content)) {
      const problem = checkStrictBlocks(content, role, i);
      if (problem !== undefined) return problem;
    }
  }
  return undefined;
}

/** Check 5 for blocks: 2026-10-21 refuses assistant `document` blocks and user text `citations` (messages [INF]). */
function checkStrictBlocks(content: unknown[], role: string, i: number): ApiErrorSpec | undefined {
  for (const [j, block] of content.entries()) {
    if (typeof block !== 'object' || block === null) continue;
    const { type, citations } = block as Record<string, unknown>;
    if (role === 'assistant' && type === 'document') {
      return invalidRequest(`messages.${i}.content.${j}: document blocks are not permitted in assistant messages`);
    }
    if (role === 'user' && type === 'text' && Array.isArray(citations) && citations.length > 0) {
      return invalidRequest(`messages.${i}.content.${j}.citations: Extra inputs are not permitted`);
    }
  }
  return undefined;
}

/** Checks 4–6 of anthropic-api.md §1.1, in order; the first failure is the answer. */
export function validateRequest(
  body: Record<string, unknown>,
  route: ApiRoute,
  version: ApiVersion,
  models: Readonly<Record<string, ModelSpec>>,
  beta: boolean,
): ValidRequest | ApiErrorSpec {
  const { model: modelId, max_tokens: maxTokens, stream } = body;
  if (modelId === undefined) return invalidRequest('model: Field required');
  if (typeof modelId !== 'string') return invalidRequest('model: Input should be a valid string');
  const model = Object.hasOwn(models, modelId) ? models[modelId] : undefined;
  if (route === 'messages') {
    if (maxTokens === undefined) return invalidRequest('max_tokens: Field required');
    if (typeof maxTokens !== 'number' || !Number.isInteger(maxTokens)) return invalidRequest('max_tokens: Input should be a valid integer');
    if (maxTokens < 1) return invalidRequest('max_tokens: Input should be greater than or equal to 1');
  }
  const messagesProblem = checkMessages(body.messages, version);
  if (messagesProblem !== undefined) return messagesProblem;
  if (stream !== undefined && typeof stream !== 'boolean') return invalidRequest('stream: Input should be a valid boolean');
  const allowed = route === 'messages' ? MESSAGES_FIELDS : COUNT_TOKENS_FIELDS;
  const betaAllowed = route === 'messages' ? BETA_MESSAGES_FIELDS : BETA_COUNT_TOKENS_FIELDS;
  const extra = Object.keys(body).find((field) => !allowed.has(field) && !(beta && betaAllowed.has(field)));
  if (extra !== undefined) return invalidRequest(`${extra}: Extra inputs are not permitted`);
  if (route === 'messages' && model !== undefined && typeof maxTokens === 'number' && maxTokens > model.maxOutputTokens) {
    return invalidRequest(`max_tokens: ${maxTokens} > ${model.maxOutputTokens}, which is the maximum allowed number of output tokens for ${modelId}`);
  }
  const sampling = SAMPLING_FIELDS.find((field) => field in body);
  if (sampling !== undefined && version === STRICT_VERSION) return invalidRequest(`${sampling}: Extra inputs are not permitted`);
  if (model?.rejectsTemperature === true && 'temperature' in body) return invalidRequest('`temperature` is deprecated for this model.');
  if (model === undefined) return notFound(`model: ${modelId}`);
  return { modelId, model, maxTokens: typeof maxTokens === 'number' ? maxTokens : 0, stream: stream === true };
}
