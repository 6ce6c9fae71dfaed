import { createHash } from 'node:crypto';
import { formatValue } from '@tollgate/limiter/internal';
import type { LimitsDocument } from './document.js';

const HASH_HEX_CHARS = 16;

/** One difference between two documents; `undefined` on a side means the field (or the whole account, pool or tenant) is absent there. */
export interface DocumentChange {
  /** e.g. `accounts.main.pools.sonnet-4.itpm`, `accounts.main.pools.haiku-4` (a pool added or removed whole). */
  path: string;
  before: unknown;
  after: unknown;
}

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Keys sorted at every level and each pool's patterns sorted: equal documents, equal text. */
function canonical(value: unknown, key?: string): Json {
  if (Array.isArray(value)) {
    const items = value.map((item) => canonical(item));
    return key === 'models' ? [...items].sort() : items; // a pool's patterns are a set
  }
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).filter(([, item]) => item !== undefined);
    return Object.fromEntries(entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, item]) => [name, canonical(item, name)]));
  }
  return value as Json;
}

/** The canonical JSON of a validated document and its hash (16 hex of SHA-256): what a fleet stores and compares. */
export function canonicalDocument(document: LimitsDocument): { json: string; hash: string } {
  const json = JSON.stringify(canonical(document));
  return { json, hash: createHash('sha256').update(json).digest('hex').slice(0, HASH_HEX_CHARS) };
}

const isRecord = (value: Json | undefined): value is { [key: string]: Json } => value !== null && typeof value === 'object' && !Array.isArray(value);

/**
 * What changes from `before` to `after`, per account, pool, tenant and field, in path order. An account, pool, tenant
 * or optional section present on one side only is one change holding it whole; a pool's `models` compare as a set.
 * Both sides are validated documents, so defaults are filled in and a default stated or omitted is no change.
 */
export function diffLimitsDocuments(before: LimitsDocument, after: LimitsDocument): DocumentChange[] {
  const changes: DocumentChange[] = [];
  const walk = (path: string[], a: Json | undefined, b: Json | undefined): void => {
    if (isRecord(a) && isRecord(b)) {
      const own = (record: { [key: string]: Json }, key: string) => (Object.hasOwn(record, key) ? record[key] : undefined); // a pool may be named `toString`
      for (const key of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) walk([...path, key], own(a, key), own(b, key));
      return;
    }
    if (JSON.stringify(a) !== JSON.stringify(b)) changes.push({ path: path.join('.'), before: a, after: b });
  };
  walk([], canonical(before), canonical(after));
  return changes;
}

/** One line per change, e.g. `accounts.main.concurrency: 8 → 4`, `accounts.main.pools.haiku-4: (none) → {"models":…}`. */
export function describeDocumentChanges(changes: readonly DocumentChange[]): string[] {
  const shown = (value: unknown) => (value === undefined ? '(none)' : formatValue(value));
  return changes.map((change) => `${change.path}: ${shown(change.before)} → ${shown(change.after)}`);
}
