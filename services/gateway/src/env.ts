import { PORT_MAX, TENANT_PATTERN, envInt, parseEnv, requireLimit, tollgateEnvSchema } from '@tollgate/queue';
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

/** `tenant:token,tenant:token` → token → tenant. */
const tokensSchema = z.string().transform((value, context) => {
  const byToken = new Map<string, string>();
  for (const entry of value.split(',').map((part) => part.trim()).filter((part) => part.length > 0)) {
    const separator = entry.indexOf(':');
    const tenant = entry.slice(0, separator);
    const token = entry.slice(separator + 1);
    if (separator < 1 || !TENANT_PATTERN.test(tenant)) context.addIssue({ code: 'custom', message: 'expected tenant:token pairs separated by commas; a tenant is letters, digits and ._-' });
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
    GATEWAY_TOKENS: tokensSchema,
    GATEWAY_MAX_BODY_BYTES: envInt(1_024, 1024 * 1024 * 1024).default(MAX_BODY_BYTES_DEFAULT),
    GATEWAY_WAIT_MS: envInt(100, 24 * 60 * 60 * 1000).default(WAIT_MS_DEFAULT),
    GATEWAY_REDIS_TIMEOUT_MS: envInt(10, 10_000).default(GATEWAY_REDIS_TIMEOUT_MS_DEFAULT),
    GATEWAY_REDIS_OP_TIMEOUT_MS: envInt(10, 60_000).default(GATEWAY_REDIS_OP_TIMEOUT_MS_DEFAULT),
  }),
);

export type GatewayEnv = z.output<typeof gatewayEnvSchema>;

/** @throws {@link EnvError} naming each bad variable (token values are never shown). */
export function parseGatewayEnv(env: Readonly<Record<string, string | undefined>>): GatewayEnv {
  return parseEnv(gatewayEnvSchema, env);
}
