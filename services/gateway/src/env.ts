import { COMPLETED_RETENTION_JOBS, COMPLETED_RETENTION_SECONDS, FAILED_RETENTION_JOBS, FAILED_RETENTION_SECONDS, TENANT_PATTERN, TENANT_QUEUED_MAX } from '@tollgate/queue';
import { EnvError, PORT_MAX, envInt, parseEnv, requireLimit, tollgateEnvSchema, type ProcessDocument } from '@tollgate/queue/internal';
import { z } from 'zod';

export const PORT_DEFAULT = 8080;
/** The API's own limit (anthropic-api.md §1.1). */
export const MAX_BODY_BYTES_DEFAULT = 32 * 1024 * 1024;
/** Longest a `POST /v1/messages` waits for its job, in ms. */
export const WAIT_MS_DEFAULT = 10 * 60 * 1000;
/** Longest `/health` waits on Redis before answering 503, in ms (well inside the 1 s promise). */
export const GATEWAY_REDIS_TIMEOUT_MS_DEFAULT = 500;
/**
 * Longest one queue operation (enqueue, job lookup) may take on a connected Redis, in ms. A stopped Redis is refused at
 * once (the connection is down and nothing is queued offline); this bound is for a Redis that is up but slow or frozen,
 * and keeps the 503 inside DESIGN §7's 1 s with room for the event loop of a busy machine.
 */
export const GATEWAY_REDIS_OP_TIMEOUT_MS_DEFAULT = 700;
/** Tokens shorter than this are refused: they could be guessed. */
export const TOKEN_LENGTH_MIN = 16;
/** Longest the gateway waits for a request's headers, in ms (Node's `headersTimeout`; slow-loris bound). */
export const HEADERS_TIMEOUT_MS_DEFAULT = 10_000;
/** Longest the gateway waits for a whole request, headers and body, in ms (`requestTimeout`; slow-body bound). */
export const REQUEST_TIMEOUT_MS_DEFAULT = 60_000;
/** How often Node checks the two deadlines above, in ms: a deadline is enforced within this much of its end. */
export const TIMEOUT_CHECK_INTERVAL_MS_DEFAULT = 1_000;

/** Deepest nesting of a JSON body; far above any real request (tool schemas nest a few levels). */
export const JSON_DEPTH_MAX_DEFAULT = 128;
/** How long `GET /v1/models…` answers are served from the gateway's memory, in ms (0: never cached). */
export const MODELS_CACHE_MS_DEFAULT = 60_000;

/** Unfinished jobs one tenant may have in the queue (waiting, delayed, running). */
export const TENANT_QUEUED_MAX_DEFAULT = 1_000;
/** Streaming answers one gateway process relays at once, all tenants together (then 529 overloaded). */
export const STREAMS_MAX_DEFAULT = 1_000;
/** Streaming answers one gateway process relays at once for one tenant (then 429). */
export const TENANT_STREAMS_MAX_DEFAULT = 100;

/** A secret that opens the admin surfaces (dashboard, metrics); never echoed. */
const adminTokenSchema = z.string().min(TOKEN_LENGTH_MIN, `expected at least ${TOKEN_LENGTH_MIN} characters`).optional();

/** `tenant:token,tenant:token` → token → tenant. */
const tokensSchema = z.string().transform((value, context) => {
  const byToken = new Map<string, string>();
  for (const entry of value
    .split(',')
    .map((part) => part.trim())
    .filter((part) => part.length > 0)) {
    const separator = entry.indexOf(':');
    const tenant = entry.slice(0, separator);
    const token = entry.slice(separator + 1);
    if (separator < 1 || !TENANT_PATTERN.test(tenant))
      context.addIssue({ code: 'custom', message: 'expected tenant:token pairs separated by commas; a tenant is letters, digits and ._-' });
    else if (token.length < TOKEN_LENGTH_MIN) context.addIssue({ code: 'custom', message: `the token of tenant ${tenant} is shorter than ${TOKEN_LENGTH_MIN} characters` });
    else if (byToken.has(token)) context.addIssue({ code: 'custom', message: `tenant ${tenant} reuses another tenant's token` });
    else byToken.set(token, tenant);
  }
  if (byToken.size === 0) context.addIssue({ code: 'custom', message: 'at least one tenant:token pair is required' });
  return byToken;
});

/** The gateway's environment: the shared Tollgate variables plus HTTP, tokens and waits. */
export const gatewayEnvSchema = requireLimit(
  tollgateEnvSchema.extend({
    PORT: envInt(0, PORT_MAX).default(PORT_DEFAULT),
    HOST: z.string().min(1).default('0.0.0.0'),
    /** Required unless TOLLGATE_CONFIG names a document whose tenants name their token variables (both may be used). */
    GATEWAY_TOKENS: tokensSchema.optional(),
    GATEWAY_MAX_BODY_BYTES: envInt(1_024, 1024 * 1024 * 1024).default(MAX_BODY_BYTES_DEFAULT),
    GATEWAY_WAIT_MS: envInt(100, 24 * 60 * 60 * 1000).default(WAIT_MS_DEFAULT),
    GATEWAY_REDIS_TIMEOUT_MS: envInt(10, 10_000).default(GATEWAY_REDIS_TIMEOUT_MS_DEFAULT),
    GATEWAY_REDIS_OP_TIMEOUT_MS: envInt(10, 60_000).default(GATEWAY_REDIS_OP_TIMEOUT_MS_DEFAULT),
    /** Opens `/`, `/dashboard/events` and `/metrics` on the main port (bearer, `x-api-key`, or the dashboard's cookie). */
    GATEWAY_ADMIN_TOKEN: adminTokenSchema,
    /** A scraper's token: opens `/metrics` on the main port only. */
    GATEWAY_METRICS_TOKEN: adminTokenSchema,
    /** `token`: the dashboard needs `GATEWAY_ADMIN_TOKEN`; `public`: anyone who reaches the port sees it; `off`: 404. */
    GATEWAY_DASHBOARD: z.enum(['token', 'public', 'off']).default('token'),
    /** A second listener that serves only `GET /metrics`, without a token; unset: none. */
    METRICS_PORT: envInt(0, PORT_MAX).optional(),
    METRICS_HOST: z.string().min(1).default('127.0.0.1'),
    GATEWAY_TENANT_QUEUED_MAX: envInt(1, TENANT_QUEUED_MAX).default(TENANT_QUEUED_MAX_DEFAULT),
    GATEWAY_STREAMS_MAX: envInt(1, 1_000_000).default(STREAMS_MAX_DEFAULT),
    GATEWAY_TENANT_STREAMS_MAX: envInt(1, 1_000_000).default(TENANT_STREAMS_MAX_DEFAULT),
    /** Finished jobs, with their payloads and answers, are kept this long and at most this many (oldest go first). */
    GATEWAY_KEEP_COMPLETED_SECONDS: envInt(1).default(COMPLETED_RETENTION_SECONDS),
    GATEWAY_KEEP_COMPLETED_JOBS: envInt(0).default(COMPLETED_RETENTION_JOBS),
    GATEWAY_KEEP_FAILED_SECONDS: envInt(1).default(FAILED_RETENTION_SECONDS),
    GATEWAY_KEEP_FAILED_JOBS: envInt(0).default(FAILED_RETENTION_JOBS),
    GATEWAY_JSON_DEPTH_MAX: envInt(8, 10_000).default(JSON_DEPTH_MAX_DEFAULT),
    GATEWAY_MODELS_CACHE_MS: envInt(0, 24 * 60 * 60 * 1000).default(MODELS_CACHE_MS_DEFAULT),
    GATEWAY_HEADERS_TIMEOUT_MS: envInt(100, 10 * 60 * 1000).default(HEADERS_TIMEOUT_MS_DEFAULT),
    GATEWAY_REQUEST_TIMEOUT_MS: envInt(100, 60 * 60 * 1000).default(REQUEST_TIMEOUT_MS_DEFAULT),
    GATEWAY_TIMEOUT_CHECK_INTERVAL_MS: envInt(100, 60_000).default(TIMEOUT_CHECK_INTERVAL_MS_DEFAULT),
  }),
).superRefine((env, context) => {
  for (const name of ['GATEWAY_ADMIN_TOKEN', 'GATEWAY_METRICS_TOKEN'] as const) {
    const token = env[name];
    if (token !== undefined && env.GATEWAY_TOKENS?.has(token) === true) context.addIssue({ code: 'custom', path: [name], message: 'must differ from every tenant token' });
  }
  if (env.GATEWAY_TOKENS === undefined && env.TOLLGATE_CONFIG === undefined)
    context.addIssue({ code: 'custom', path: ['GATEWAY_TOKENS'], message: 'required (or TOLLGATE_CONFIG with tenants)' });
  if (env.GATEWAY_HEADERS_TIMEOUT_MS > env.GATEWAY_REQUEST_TIMEOUT_MS) {
    context.addIssue({ code: 'custom', path: ['GATEWAY_HEADERS_TIMEOUT_MS'], message: 'must not exceed GATEWAY_REQUEST_TIMEOUT_MS' });
  }
});

export type GatewayEnv = z.output<typeof gatewayEnvSchema>;

/** Variables that hold something else than a tenant token: a document naming one would turn, say, a Redis URL or the host name into a token. */
const NOT_TOKEN_VARIABLES = /^(REDIS_|TOLLGATE_|GATEWAY_|ANTHROPIC_|NODE_|npm_|METRICS_|MOCK_)|^(PATH|HOME|HOSTNAME|PWD|OLDPWD|USER|LOGNAME|SHELL|LANG|TERM|TMPDIR|PORT|HOST)$/;
const isTokenVariable = (name: string) => !NOT_TOKEN_VARIABLES.test(name);

/**
 * The tenant tokens: `GATEWAY_TOKENS`, and each tenant of the document (of any account) from the variable its `tokenEnv`
 * names (DESIGN §8: a token is never stored in the document or in Redis).
 * @throws {@link EnvError} naming the variable: unset, shorter than {@link TOKEN_LENGTH_MIN}, another tenant's token, or
 * an admin token; or when there is no tenant at all.
 */
export function tenantTokens(env: GatewayEnv, source: ProcessDocument | undefined, processEnv: Readonly<Record<string, string | undefined>>): Map<string, string> {
  const byToken = new Map(env.GATEWAY_TOKENS ?? []);
  const admin = new Set([env.GATEWAY_ADMIN_TOKEN, env.GATEWAY_METRICS_TOKEN].filter((token) => token !== undefined));
  for (const [tenant, policy] of Object.entries(source?.document.tenants ?? {})) {
    const token = processEnv[policy.tokenEnv];
    // a gateway deployed for one account need not hold the other accounts' tenants' tokens: those tenants sign in elsewhere
    if ((token === undefined || token === '') && policy.account !== source?.account) continue;
    const problem = !isTokenVariable(policy.tokenEnv)
      ? "a variable of the gateway's own (REDIS_*, TOLLGATE_*, GATEWAY_*, ANTHROPIC_*, NODE_*, npm_*, PATH, HOME, HOSTNAME…), not a token"
      : token === undefined || token === ''
        ? 'unset'
        : token.length < TOKEN_LENGTH_MIN
          ? `shorter than ${TOKEN_LENGTH_MIN} characters`
          : admin.has(token)
            ? 'the admin or metrics token'
            : byToken.has(token) && byToken.get(token) !== tenant
              ? `tenant ${byToken.get(token) ?? ''}'s token`
              : undefined;
    if (problem !== undefined) throw new EnvError(`${policy.tokenEnv} (the token of tenant ${tenant} in ${source?.path ?? 'the document'}) is invalid: ${problem}`);
    byToken.set(token as string, tenant);
  }
  if (byToken.size === 0) throw new EnvError('GATEWAY_TOKENS=unset is invalid: no tenant token (set GATEWAY_TOKENS, or tenants with tokenEnv in TOLLGATE_CONFIG)');
  return byToken;
}

/** @throws {@link EnvError} naming each bad variable (token values are never shown). */
export function parseGatewayEnv(env: Readonly<Record<string, string | undefined>>): GatewayEnv {
  return parseEnv(gatewayEnvSchema, env);
}
