import { pino } from 'pino';
import { buildGateway, parseGatewayEnv, type Gateway } from '../src/index.js';

export const MODEL = 'claude-haiku-4-5';
export const TOKEN_A = 'token-tenant-a-0123456789';
export const TOKEN_B = 'token-tenant-b-0123456789';
export const TOKENS = `team-a:${TOKEN_A},team-b:${TOKEN_B}`;
/** Opens the dashboard and `/metrics`. */
export const ADMIN_TOKEN = 'token-admin-0123456789abcdef';

/** A gateway in this process on a free port. */
export async function startGateway(env: Record<string, string>): Promise<{ gateway: Gateway; url: string }> {
  const gateway = await buildGateway(
    parseGatewayEnv({ PORT: '0', HOST: '127.0.0.1', GATEWAY_TOKENS: TOKENS, GATEWAY_ADMIN_TOKEN: ADMIN_TOKEN, TOLLGATE_CONCURRENCY: '4', ...env }),
    pino({ level: 'silent' }),
  );
  const url = await gateway.app.listen({ port: 0, host: '127.0.0.1' });
  return { gateway, url };
}

/** A small valid Messages request. */
export function request(tag: string | number, maxTokens = 32) {
  return { model: MODEL, max_tokens: maxTokens, messages: [{ role: 'user' as const, content: `question ${tag}` }] };
}
