import { EnvError } from '@tollgate/queue/internal';
import { describe, expect, it } from 'vitest';
import { parseGatewayEnv } from '../src/index.js';
import { TOKENS, TOKEN_A } from './support.js';

const base = { GATEWAY_TOKENS: TOKENS, TOLLGATE_CONCURRENCY: '4' };

describe('the gateway environment', () => {
  it('has closed defaults: the dashboard needs a token, the metrics port is off and local, timeouts and caps are set', () => {
    const env = parseGatewayEnv(base);
    expect(env.GATEWAY_DASHBOARD).toBe('token');
    expect(env.GATEWAY_ADMIN_TOKEN).toBeUndefined();
    expect(env.METRICS_PORT).toBeUndefined();
    expect(env.METRICS_HOST).toBe('127.0.0.1');
    expect(env.GATEWAY_REQUEST_TIMEOUT_MS).toBeGreaterThan(0);
    expect(env.GATEWAY_HEADERS_TIMEOUT_MS).toBeLessThanOrEqual(env.GATEWAY_REQUEST_TIMEOUT_MS);
    expect(env.GATEWAY_TENANT_QUEUED_MAX).toBeGreaterThan(0);
  });

  it.each([
    [{ GATEWAY_ADMIN_TOKEN: TOKEN_A }, /^GATEWAY_ADMIN_TOKEN="\*\*\*" is invalid: must differ from every tenant token/],
    [{ GATEWAY_METRICS_TOKEN: 'short' }, /^GATEWAY_METRICS_TOKEN="\*\*\*" is invalid/],
    [{ GATEWAY_DASHBOARD: 'open' }, /^GATEWAY_DASHBOARD="open" is invalid/],
    [{ GATEWAY_HEADERS_TIMEOUT_MS: '5000', GATEWAY_REQUEST_TIMEOUT_MS: '1000' }, /^GATEWAY_HEADERS_TIMEOUT_MS="5000" is invalid: must not exceed GATEWAY_REQUEST_TIMEOUT_MS/],
    [{ GATEWAY_TENANT_QUEUED_MAX: '0' }, /^GATEWAY_TENANT_QUEUED_MAX="0" is invalid/],
  ])('%j is refused naming the variable (secrets shown as ***)', (extra, message) => {
    let error: unknown;
    try {
      parseGatewayEnv({ ...base, ...extra });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(EnvError);
    expect((error as EnvError).message).toMatch(message);
    expect((error as EnvError).message).not.toContain(TOKEN_A);
  });
});
