import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value).digest();

/**
 * Who may call a route, set in the route's `config.access`. A route that sets nothing needs a tenant token: a route
 * added later is closed until it says otherwise (deny by default, decided on the route the router matched, never on
 * the raw request target).
 */
export type Access = 'public' | 'tenant' | 'admin' | 'metrics';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Default `tenant`. `admin`: the admin token; `metrics`: the admin or the metrics token; `public`: anyone. */
    access?: Access;
    /** The route also takes the admin token from `?token=` (the dashboard's sign-in link). */
    queryToken?: boolean;
  }
}

/** The cookie that carries the admin token for the dashboard page and its event stream (EventSource sends no headers). */
export const ADMIN_COOKIE = 'tollgate_admin';

/** Finds the value of a token in constant time per configured token (no early exit on a prefix match). */
export class TokenTable<Value extends string = string> {
  readonly #entries: Array<{ digest: Buffer; value: Value }>;

  constructor(byToken: ReadonlyMap<string, Value>) {
    this.#entries = [...byToken].map(([token, value]) => ({ digest: digest(token), value }));
  }

  /** The value for `Authorization: Bearer <token>` or `x-api-key: <token>`, or undefined. */
  tenantOf(headers: Readonly<Record<string, string | string[] | undefined>>): Value | undefined {
    return this.lookup(tokenOf(headers));
  }

  /** The value of `token`, or undefined. */
  lookup(token: string | undefined): Value | undefined {
    if (token === undefined) return undefined;
    const given = digest(token);
    let value: Value | undefined;
    for (const entry of this.#entries) if (timingSafeEqual(entry.digest, given)) value = entry.value;
    return value;
  }
}

/** `x-api-key` wins when both are sent, as at the API. */
export function tokenOf(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.length > 0) return apiKey;
  const authorization = headers.authorization;
  if (typeof authorization !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(authorization);
  return match?.[1];
}

/** The value of cookie `name`, or undefined. */
export function cookieOf(headers: Readonly<Record<string, string | string[] | undefined>>, name: string): string | undefined {
  const header = headers.cookie;
  if (typeof header !== 'string') return undefined;
  for (const part of header.split(';')) {
    const separator = part.indexOf('=');
    if (separator < 0 || part.slice(0, separator).trim() !== name) continue;
    try {
      return decodeURIComponent(part.slice(separator + 1).trim());
    } catch {
      return undefined; // malformed escape: no token
    }
  }
  return undefined;
}
