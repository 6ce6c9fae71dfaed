import { readFile } from 'node:fs/promises';
import { describeZodError, toError } from '@tollgate/limiter/internal';
import { InvalidConfigError, limiterOptionsSchema, limitsAsOptions, type FleetLimits, type FleetLimitsReading } from '@tollgate/limiter';
import { withDeadline } from '@tollgate/queue/internal';
import { applyLimitsDocument, describeDocumentChanges, diffLimitsDocuments, parseLimitsDocument, type LimitsDocument, type StoredDocument } from '@tollgate/config';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { z } from 'zod';
import { CliError, EXIT, shown } from './errors.js';
import { fleetLimits, openLimiter, storedDocument, type Context } from './fleet.js';

/** A limits file larger than this is not a limits file. */
const LIMITS_FILE_BYTES_MAX = 1024 * 1024;
/** Two rates closer than this (relative) are the same rate: a per-minute limit stated per second, say. */
const SAME_RATE_RELATIVE = 1e-9;

/**
 * The limits of one limiter (one account, one pool) in the shape of limiter options, as `limits show` prints them
 * and `limits apply` reads them (YAML or JSON). The limiter keeps them as its fleet limits document (DESIGN §8);
 * the accounts/pools/tenants document replaces this file when it lands.
 */
const rateSchema = z.strictObject({ limit: z.number(), intervalMs: z.number(), burst: z.number().optional() });

export const limitsFileSchema = z.strictObject({
  concurrency: z.number().optional(),
  rates: z.record(z.string(), rateSchema).optional(),
  reserve: z.array(z.strictObject({ maxPriority: z.number(), concurrency: z.number() })).default([]),
  /** Omitted: the fleet's, unchanged. */
  leaseTtlMs: z.number().optional(),
  /** A limiter with pools (DESIGN §9), instead of `rates`: each pool's rates, as limiter options state them. */
  pools: z.record(z.string(), z.record(z.string(), rateSchema)).optional(),
});
export type LimitsFile = z.output<typeof limitsFileSchema>;

/** One field that differs between the fleet and a file. */
export interface LimitChange {
  field: string;
  fleet: number | string | null;
  file: number | string | null;
}

/** The fleet's limits as a file states them (what `limits show` prints). */
export function limitsFile(limits: FleetLimits): LimitsFile {
  const { concurrency, rates, pools, reserve, leaseTtlMs } = limitsAsOptions(limits);
  return {
    ...(concurrency === undefined ? {} : { concurrency }),
    ...(rates === undefined ? {} : { rates }),
    ...(pools === undefined ? {} : { pools }),
    reserve: reserve ?? [],
    ...(leaseTtlMs === undefined ? {} : { leaseTtlMs }),
  };
}

/** A file's limits as the fleet document they would become (a missing lease length keeps the fleet's). */
export function documentOf(file: LimitsFile, fleet: FleetLimits): FleetLimits {
  const rateOf = (rate: z.output<typeof rateSchema>) => ({ limit: rate.limit, intervalMs: rate.intervalMs, burst: rate.burst ?? null });
  const rates = Object.fromEntries(Object.entries(file.rates ?? {}).map(([dimension, rate]) => [dimension, rateOf(rate)]));
  // a limiter with pools names each pool's buckets '<pool>/<dimension>' (DESIGN §9)
  for (const [pool, own] of Object.entries(file.pools ?? {})) {
    for (const [dimension, rate] of Object.entries(own)) rates[`${pool}/${dimension}`] = rateOf(rate);
  }
  return {
    schema: 1,
    concurrency: file.concurrency ?? null,
    rates,
    reserve: file.reserve,
    leaseTtlMs: file.leaseTtlMs ?? fleet.leaseTtlMs,
    ...(file.pools === undefined ? {} : { pools: Object.keys(file.pools).sort() }),
  };
}

/** Reads a limits file or a limits document (YAML, so JSON too), bounded in size. */
async function readYaml(path: string): Promise<{ text: string; raw: unknown }> {
  let text: string;
  try {
    const buffer = await readFile(path);
    if (buffer.byteLength > LIMITS_FILE_BYTES_MAX) throw new Error(`larger than ${LIMITS_FILE_BYTES_MAX} bytes`);
    text = buffer.toString('utf8');
  } catch (error) {
    throw new CliError(EXIT.usage, `cannot read limits file ${shown(path)}: ${toError(error).message}`);
  }
  try {
    return { text, raw: parseYaml(text) };
  } catch (error) {
    throw new CliError(EXIT.refused, `limits file ${shown(path)} is not YAML or JSON: ${toError(error).message.split('\n')[0]}`);
  }
}

/** A file with top-level `accounts` is the fleet limits document (DESIGN §8); anything else, one limiter's limits. */
const isDocument = (raw: unknown): boolean => typeof raw === 'object' && raw !== null && Object.hasOwn(raw, 'accounts');

/** Validates a whole document: every bad field is named, and nothing is applied from a bad document. */
function parseDocumentFile(text: string, path: string): LimitsDocument {
  try {
    return parseLimitsDocument(text, shown(path));
  } catch (error) {
    throw new CliError(EXIT.refused, toError(error).message);
  }
}

/** Reads and validates a limits file: every bad field is named, and nothing is applied from a bad file. */
export async function readLimitsFile(context: Context, name: string, path: string): Promise<{ file: LimitsFile; reading: FleetLimitsReading; next: FleetLimits }> {
  const { raw } = await readYaml(path);
  const parsed = limitsFileSchema.safeParse(raw);
  if (!parsed.success) throw new CliError(EXIT.refused, `limits file ${shown(path)} is invalid: ${describeZodError(parsed.error, raw)}`);
  const file = parsed.data;
  const reading = await fleetLimits(context, name);
  // the limiter's own rules (bounds, reserve below concurrency, at least one limit), each field named
  const options = { redis: context.redis, name, ...file, leaseTtlMs: file.leaseTtlMs ?? reading.limits.leaseTtlMs };
  const checked = limiterOptionsSchema.safeParse(options);
  if (!checked.success) throw new CliError(EXIT.refused, `limits file ${shown(path)} is invalid: ${describeZodError(checked.error, options)}`);
  return { file: { ...file, leaseTtlMs: options.leaseTtlMs }, reading, next: documentOf(file, reading.limits) };
}

const perMinute = (rate: { limit: number; intervalMs: number }) => (rate.limit * 60_000) / rate.intervalMs;
const same = (a: number, b: number) => Math.abs(a - b) <= SAME_RATE_RELATIVE * Math.max(Math.abs(a), Math.abs(b), 1);
const reserveText = (reserve: FleetLimits['reserve']) => reserve.map((channel) => `${channel.maxPriority}:${channel.concurrency}`).join(';') || null;

/** What applying `next` would change, field by field (a rate compares as its per-minute limit and its capacity). */
export function diffLimits(fleet: FleetLimits, next: FleetLimits): LimitChange[] {
  const changes: LimitChange[] = [];
  const compare = (field: string, a: number | string | null, b: number | string | null) => {
    const equal = typeof a === 'number' && typeof b === 'number' ? same(a, b) : a === b;
    if (!equal) changes.push({ field, fleet: a, file: b });
  };
  compare('concurrency', fleet.concurrency, next.concurrency);
  for (const dimension of new Set([...Object.keys(fleet.rates), ...Object.keys(next.rates)])) {
    const a = fleet.rates[dimension];
    const b = next.rates[dimension];
    compare(`rates.${dimension}.perMinute`, a === undefined ? null : perMinute(a), b === undefined ? null : perMinute(b));
    compare(`rates.${dimension}.capacity`, a === undefined ? null : (a.burst ?? a.limit), b === undefined ? null : (b.burst ?? b.limit));
  }
  compare('reserve', reserveText(fleet.reserve), reserveText(next.reserve));
  compare('leaseTtlMs', fleet.leaseTtlMs, next.leaseTtlMs);
  compare('pools', fleet.pools?.join(', ') ?? null, next.pools?.join(', ') ?? null);
  return changes;
}

function renderChanges(changes: readonly LimitChange[]): string {
  return changes.map((change) => `  ${change.field}: ${change.fleet ?? '(none)'} → ${change.file ?? '(none)'}`).join('\n');
}

export async function limitsShowCommand(context: Context, name: string): Promise<void> {
  const { limits, version, effectiveConcurrency } = await fleetLimits(context, name);
  const stored = await storedDocument(context);
  if (context.json) {
    const document = stored === undefined ? null : { revision: stored.revision, hash: stored.hash, document: stored.document };
    context.print(JSON.stringify({ name, revision: version, limits: limitsFile(limits), effectiveConcurrency, document }));
    return;
  }
  const effective =
    effectiveConcurrency !== null && effectiveConcurrency !== limits.concurrency
      ? `\n# effective concurrency now: ${effectiveConcurrency} (adaptive control or \`tollgate concurrency\`)`
      : '';
  context.print(`# limits of limiter ${name} (pool default), revision ${version}, as the fleet runs them${effective}\n${stringifyYaml(limitsFile(limits)).trimEnd()}`);
  if (stored !== undefined) context.print(`# the fleet's limits document, revision ${stored.revision} (hash ${stored.hash})\n${stringifyYaml(stored.document).trimEnd()}`);
}

/** What applying `document` changes against the stored one (every field, when none is stored yet). */
async function documentChanges(context: Context, document: LimitsDocument): Promise<{ stored: StoredDocument | undefined; lines: string[] }> {
  const stored = await storedDocument(context);
  const lines = stored === undefined ? ['(no document stored yet: all of it)'] : describeDocumentChanges(diffLimitsDocuments(stored.document, document));
  return { stored, lines };
}

/** `limits diff FILE`: exit 0 when the file states the fleet's limits, {@link EXIT.differs} when it does not. */
export async function limitsDiffCommand(context: Context, name: string, path: string): Promise<number> {
  const { text, raw } = await readYaml(path);
  if (isDocument(raw)) {
    const { stored, lines } = await documentChanges(context, parseDocumentFile(text, path));
    const same = stored !== undefined && lines.length === 0;
    context.print(
      context.json
        ? JSON.stringify({ document: true, revision: stored?.revision ?? null, changes: lines })
        : same
          ? 'the file states the document in force'
          : `applying ${path} would change\n  ${lines.join('\n  ')}`,
    );
    return same ? EXIT.ok : EXIT.differs;
  }
  const { reading, next } = await readLimitsFile(context, name, path);
  const changes = diffLimits(reading.limits, next);
  context.print(
    context.json
      ? JSON.stringify({ name, changes })
      : changes.length === 0
        ? `${name}: the file states the limits in force`
        : `${name}: applying ${path} would change\n${renderChanges(changes)}`,
  );
  return changes.length === 0 ? EXIT.ok : EXIT.differs;
}

/**
 * `limits apply FILE`: the limiter's explicit apply (DESIGN §8): every process runs with the new limits within one
 * heartbeat, and a queued waiter that a lowered capacity can no longer hold is rejected at once. A bad file is
 * refused whole.
 */
export async function limitsApplyCommand(context: Context, name: string, path: string): Promise<void> {
  const { text, raw } = await readYaml(path);
  if (isDocument(raw)) {
    const document = parseDocumentFile(text, path);
    const { lines } = await documentChanges(context, document);
    let applied;
    try {
      applied = await withDeadline(applyLimitsDocument(context.redis, document, { redisTimeoutMs: context.timeoutMs }), context.timeoutMs * 4, 'apply');
    } catch (error) {
      if (error instanceof InvalidConfigError) throw new CliError(EXIT.refused, `limits document ${shown(path)} cannot be applied: ${error.message}`);
      throw error;
    }
    const limiters = applied.limiters.map((limiter) => `${limiter.name} revision ${limiter.version}${limiter.changed ? ' (written)' : ''}`).join(', ');
    context.print(
      context.json
        ? JSON.stringify({ document: true, applied: applied.changed, revision: applied.revision, changes: applied.changed ? lines : [], limiters: applied.limiters })
        : applied.changed
          ? `document applied as revision ${applied.revision} (limiters: ${limiters})\n  ${lines.join('\n  ')}`
          : `document: unchanged (revision ${applied.revision}); limiters: ${limiters}`,
    );
    return;
  }
  const { file, reading, next } = await readLimitsFile(context, name, path);
  const changes = diffLimits(reading.limits, next);
  let revision = reading.version;
  if (changes.length > 0) {
    const { limiter } = await openLimiter(context, name);
    revision = (await withDeadline(limiter.applyLimits(file), context.timeoutMs * 2, 'apply')).version;
  }
  context.print(
    context.json
      ? JSON.stringify({ name, applied: changes.length > 0, revision, changes })
      : changes.length === 0
        ? `${name}: nothing to change (revision ${revision})`
        : `${name}: applied as revision ${revision}\n${renderChanges(changes)}`,
  );
}
