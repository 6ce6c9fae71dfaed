import { createHash, timingSafeEqual } from 'node:crypto';

const digest = (value: string) => createHash('sha256').update(value).digest();

/** Finds the tenant of a bearer token in constant time per configured token (no early exit on a prefix match). */
export class TokenTable {
  readonly #entries: Array<{ digest: Buffer; tenant: string }>;

  constructor(byToken: ReadonlyMap<string, string>) {
    this.#entries = [...byToken].map(([token, tenant]) => ({ digest: digest(token), tenant }));
  }

  /** The tenant for `Authorization: Bearer <token>` or `x-api-key: <token>`, or undefined. */
  tenantOf(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
    const token = tokenOf(headers);
    if (token === undefined) return undefined;
    const given = digest(token);
    let tenant: string | undefined;
    for (const entry of this.#entries) if (timingSafeEqual(entry.digest, given)) tenant = entry.tenant;
    return tenant;
  }
}

/** `x-api-key` wins when both are sent, as at the API. */
function tokenOf(headers: Readonly<Record<string, string | string[] | undefined>>): string | undefined {
  const apiKey = headers['x-api-key'];
  if (typeof apiKey === 'string' && apiKey.length > 0) return apiKey;
  const authorization = headers.authorization;
  if (typeof authorization !== 'string') return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(authorization);
  return match?.[1];
}
