import type { Cluster, Redis } from 'ioredis';
import { InvalidConfigError, PRIORITY_MAX } from '@tollgate/limiter';
import { toError } from '@tollgate/limiter/internal';
import { canonicalDocument } from './diff.js';
import { validateLimitsDocument, type LimitsDocument } from './document.js';

/**
 * The fleet index of DESIGN §8: the whole limits document, as canonical JSON, with its hash and a revision that rises
 * with every change. One key for the fleet (each account's enforced limits live under the account's own hash tag, in
 * its limiter's config). It holds names of variables, never a key or a token.
 */
export const DOCUMENT_KEY = 'tollgate:document';
/** The priority of a tenant that a document with tenants does not name: the least urgent. */
export const UNNAMED_TENANT_PRIORITY = PRIORITY_MAX;
/** How often a process looks for a new revision of the document (one HGET), unless told otherwise. */
export const DOCUMENT_POLL_MS_DEFAULT = 1_000;

type RedisClient = Redis | Cluster;

/** The document in force, as Redis holds it. */
export interface StoredDocument {
  document: LimitsDocument;
  /** Rises by one with every write that changed the document. */
  revision: number;
  hash: string;
}

/** Writes json and hash and bumps the revision, unless the stored hash is the same (or, with ARGV[3] '1', any document is stored): one script, so two applies never share a revision. */
const STORE_SCRIPT = `
local hash = redis.call('HGET', KEYS[1], 'hash')
if hash == ARGV[2] or (ARGV[3] == '1' and hash) then return { 0, tonumber(redis.call('HGET', KEYS[1], 'revision') or '0') } end
local revision = redis.call('HINCRBY', KEYS[1], 'revision', 1)
local floor = tonumber(ARGV[4])
if floor and floor > revision then revision = floor; redis.call('HSET', KEYS[1], 'revision', floor) end
redis.call('HSET', KEYS[1], 'json', ARGV[1], 'hash', ARGV[2])
return { 1, revision }`;

/**
 * Stores `document` as the fleet's (an explicit apply, DESIGN §8). Storing the document in force again changes nothing.
 * `ifAbsent`: only when no document is stored yet (a process's first boot of a fleet). `revisionFloor`: the revision
 * written is at least this (a document brought back after data loss keeps its revision, so revisions never go back).
 * @returns the revision in force after the call, and whether this call wrote it.
 */
export async function storeLimitsDocument(
  redis: RedisClient,
  document: LimitsDocument,
  options: { ifAbsent?: boolean; revisionFloor?: number } = {},
): Promise<{ revision: number; hash: string; changed: boolean }> {
  const { json, hash } = canonicalDocument(document);
  const floor = options.revisionFloor === undefined ? '' : String(options.revisionFloor);
  const [changed, revision] = (await redis.eval(STORE_SCRIPT, 1, DOCUMENT_KEY, json, hash, options.ifAbsent === true ? '1' : '0', floor)) as [number, number];
  return { revision, hash, changed: changed === 1 };
}

/**
 * The fleet's document, or undefined when none was ever applied on this Redis.
 * @throws {@link InvalidConfigError} when what Redis holds is not a valid document (it is never used half).
 */
export async function readStoredDocument(redis: RedisClient): Promise<StoredDocument | undefined> {
  const [json, hash, revision] = await redis.hmget(DOCUMENT_KEY, 'json', 'hash', 'revision');
  if (json == null || hash == null || revision == null) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (cause) {
    throw new InvalidConfigError(`the limits document in Redis (${DOCUMENT_KEY}) is not JSON`, { cause });
  }
  return { document: validateLimitsDocument(value, `the limits document in Redis (${DOCUMENT_KEY})`), revision: Number(revision), hash };
}

/**
 * Follows the fleet's document: reads it once, then looks for a new revision every `pollMs` (one HGET) and reads it
 * again when it changed, so that a process runs with an applied document within `pollMs`, without a restart. A failed
 * read keeps the last document it had (a Redis outage does not drop a policy) and is reported to `onError`.
 */
export class DocumentFollower {
  readonly #redis: RedisClient;
  readonly #pollMs: number;
  readonly #onError: (error: Error) => void;
  readonly #onChange: ((stored: StoredDocument | undefined) => void) | undefined;
  #current: StoredDocument | undefined;
  #first: Promise<void> | undefined;
  #loaded = false;
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: { redis: RedisClient; pollMs?: number; onError?: (error: Error) => void; onChange?: (stored: StoredDocument | undefined) => void }) {
    this.#redis = options.redis;
    this.#pollMs = options.pollMs ?? DOCUMENT_POLL_MS_DEFAULT;
    this.#onError = options.onError ?? (() => {});
    this.#onChange = options.onChange;
  }

  /** The document last read; undefined before the first read or when none is stored. */
  /** Whether the document has been read once (then `ready()` resolves at once). */
  get loaded(): boolean {
    return this.#loaded;
  }

  get current(): StoredDocument | undefined {
    return this.#current;
  }

  /**
   * Resolves once the document has been read (then at once); starts the polling. Rejects when that first read fails
   * (Redis unreachable, an invalid document in Redis), and the next call reads again: a caller never runs as if there
   * were no document only because it could not read one.
   */
  ready(): Promise<void> {
    if (this.#loaded) return Promise.resolve();
    this.#first ??= this.#read().then(
      () => {
        this.#loaded = true;
        this.#schedule();
      },
      (error: unknown) => {
        this.#first = undefined;
        throw error;
      },
    );
    return this.#first;
  }

  /** Reads the document now when its revision changed; a failure goes to `onError` and keeps the last document. */
  async refresh(): Promise<void> {
    try {
      await this.#read();
    } catch (error) {
      this.#onError(toError(error));
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
  }

  async #read(): Promise<void> {
    const revision = await this.#redis.hget(DOCUMENT_KEY, 'revision');
    if (revision === null) {
      // Redis lost it (FLUSHALL, a restart without persistence): the fleet's policy must not turn off with it. The
      // document this process last followed is stored again (only if still absent: a concurrent apply wins), as a
      // limiter brings back the fleet's limits after data loss
      const last = this.#current;
      if (last !== undefined) {
        const stored = await storeLimitsDocument(this.#redis, last.document, { ifAbsent: true, revisionFloor: last.revision });
        if (stored.hash !== last.hash || stored.revision !== last.revision) this.#set(await readStoredDocument(this.#redis));
      }
      return;
    }
    if (this.#current !== undefined && Number(revision) === this.#current.revision) return;
    this.#set(await readStoredDocument(this.#redis));
  }

  #set(stored: StoredDocument | undefined): void {
    this.#current = stored;
    this.#onChange?.(stored);
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      void this.refresh().then(() => this.#schedule());
    }, this.#pollMs);
    this.#timer.unref();
  }
}

/**
 * The priority a tenant's job is served with: its requested priority, or its `maxPriority` when it asked for a more
 * urgent one (0 is the most urgent). No document, or a document that names no tenant, leaves it as asked; a tenant that
 * a document with tenants does not name is served at {@link UNNAMED_TENANT_PRIORITY}.
 */
export function servedPriority(document: LimitsDocument | undefined, tenant: string | null | undefined, requested: number): number {
  if (document === undefined || tenant === undefined || tenant === null) return requested;
  const policy = Object.hasOwn(document.tenants, tenant) ? document.tenants[tenant] : undefined;
  // a document that names tenants gives one it does not name (removed from it, or signed in by another list) the
  // least urgent priority: no policy is not every privilege
  if (policy === undefined) return Object.keys(document.tenants).length === 0 ? requested : UNNAMED_TENANT_PRIORITY;
  return Math.max(requested, policy.maxPriority);
}
