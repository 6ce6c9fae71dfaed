/** Headers whose values are secrets: the log keeps that they were sent, never what. */
const SECRET_HEADERS: ReadonlySet<string> = new Set(['authorization', 'x-api-key']);
export const REDACTED = '[redacted]';

/** One request as the mock received it; `GET /_mock/requests` lists them. */
export interface LoggedRequest {
  /** Arrival number since the last reset, from 1. */
  seq: number;
  method: string;
  /** Path and query as sent. */
  url: string;
  /** Lower-case names; secrets redacted. */
  headers: Record<string, string | string[]>;
  /** The body text exactly as received (UTF-8), cut at `bodyBytesMax`; null without a body. */
  body: string | null;
  bodyTruncated: boolean;
}

/** The last `size` requests, oldest first: bounded in entries and in body bytes per entry. */
export class RequestLog {
  #entries: LoggedRequest[] = [];
  #seq = 0;

  constructor(
    readonly size: number,
    readonly bodyBytesMax: number,
  ) {}

  record(method: string, url: string, headers: Readonly<Record<string, string | string[] | undefined>>, body: unknown): void {
    this.#seq += 1;
    if (this.size === 0) return;
    const kept: Record<string, string | string[]> = {};
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) kept[name] = SECRET_HEADERS.has(name) ? REDACTED : value;
    const text = typeof body === 'string' ? body : null;
    const bytes = text === null ? null : Buffer.from(text, 'utf8');
    const bodyTruncated = bytes !== null && bytes.length > this.bodyBytesMax;
    this.#entries.push({
      seq: this.#seq,
      method,
      url,
      headers: kept,
      body: bytes === null ? null : bodyTruncated ? bytes.subarray(0, this.bodyBytesMax).toString('utf8') : text,
      bodyTruncated,
    });
    if (this.#entries.length > this.size) this.#entries.splice(0, this.#entries.length - this.size);
  }

  list(): LoggedRequest[] {
    return this.#entries.slice();
  }

  clear(): void {
    this.#entries = [];
    this.#seq = 0;
  }
}
