import { InvalidArgumentError, InvalidConfigError } from '@tollgate/limiter';
import { cutText, formatValue } from '@tollgate/limiter/internal';

/** A model pattern: model-id characters and `*` (any run of characters, also none), 1 to 200 characters. */
export const MODEL_PATTERN_PATTERN = /^[A-Za-z0-9._:@/*-]{1,200}$/;
const WILDCARD = '*';

/** What pool resolution needs of an account. */
export interface PoolsSpec {
  pools: Readonly<Record<string, { readonly models: readonly string[] }>>;
  defaultPool?: string | undefined;
}

/** The pool a model goes to, and why. */
export interface PoolMatch {
  pool: string;
  /** The pattern that matched; undefined when the model went to the default pool. */
  pattern: string | undefined;
}

/** A pattern listed a second time in one account: in another pool (`firstPool` differs), or twice in one pool. */
export interface PatternConflict {
  pool: string;
  index: number;
  pattern: string;
  firstPool: string;
}

/**
 * Every pattern that is listed again after its first pool (each pattern belongs to one pool of an account); a run of
 * stars is one star, so `claude-haiku-4**` is `claude-haiku-4*` listed again.
 */
export function patternConflicts(pools: PoolsSpec['pools']): PatternConflict[] {
  const owner = new Map<string, string>();
  const conflicts: PatternConflict[] = [];
  for (const [pool, { models }] of Object.entries(pools)) {
    models.forEach((pattern, index) => {
      const same = pattern.replace(/\*+/g, WILDCARD);
      const firstPool = owner.get(same);
      if (firstPool === undefined) owner.set(same, pool);
      else conflicts.push({ pool, index, pattern, firstPool });
    });
  }
  return conflicts;
}

/** Whether `model` matches the glob `pattern` (`*` matches any run of characters; everything else is literal). */
export function patternMatches(pattern: string, model: string): boolean {
  const parts = pattern.split(WILDCARD);
  const first = parts[0] ?? '';
  if (parts.length === 1) return model === pattern;
  const last = parts[parts.length - 1] ?? '';
  if (!model.startsWith(first) || model.length < first.length + last.length || !model.endsWith(last)) return false;
  // the middle parts in order, each as early as possible, between the prefix and the suffix (greedy is exact for `*`-only globs)
  let at = first.length;
  const end = model.length - last.length;
  for (const part of parts.slice(1, -1)) {
    const found = model.indexOf(part, at);
    if (found < 0 || found + part.length > end) return false;
    at = found + part.length;
  }
  return true;
}

/** How specific a pattern is: its literal characters. `claude-haiku-4*` (14) beats `claude-*` (7); an exact id beats both. */
export function patternSpecificity(pattern: string): number {
  return pattern.length - pattern.split(WILDCARD).length + 1 + (pattern.includes(WILDCARD) ? 0 : 1);
}

/**
 * The pool of `model` by its patterns alone: the matching pattern with the most literal characters wins (an exact id
 * beats any glob), so a catch-all `claude-*` pool can sit beside `claude-haiku-4*`. Document order plays no part.
 * @returns undefined when no pattern matches.
 * @throws {@link InvalidConfigError} when two pools' patterns match it equally specifically (the document must say which).
 */
export function matchPool(spec: PoolsSpec, model: string): PoolMatch | undefined {
  let best: { pool: string; pattern: string; specificity: number } | undefined;
  let tie: { pool: string; pattern: string } | undefined;
  for (const [pool, { models }] of Object.entries(spec.pools)) {
    for (const pattern of models) {
      if (!patternMatches(pattern, model)) continue;
      const specificity = patternSpecificity(pattern);
      if (best === undefined || specificity > best.specificity) {
        best = { pool, pattern, specificity };
        tie = undefined;
      } else if (specificity === best.specificity && pool !== best.pool) tie = { pool, pattern };
    }
  }
  if (best !== undefined && tie !== undefined) {
    throw new InvalidConfigError(
      `model ${formatValue(model)} matches pool ${best.pool} (${formatValue(best.pattern)}) and pool ${tie.pool} (${formatValue(
        tie.pattern,
      )}) equally; make one pattern more specific`,
    );
  }
  return best === undefined ? undefined : { pool: best.pool, pattern: best.pattern };
}

/**
 * The pool a call to `model` takes from: {@link matchPool}, else the account's `defaultPool`.
 * @throws {@link InvalidArgumentError} (code `INVALID_ARGUMENT`) when nothing matches and there is no default pool,
 *   naming the model and the account's patterns, e.g.
 *   `model: expected a model of a pool of account main (claude-opus-4*, claude-sonnet-4*) or a defaultPool (got "gpt-4o")`.
 */
export function resolvePool(spec: PoolsSpec, model: string, accountName: string): PoolMatch {
  const match = matchPool(spec, model);
  if (match !== undefined) return match;
  if (spec.defaultPool !== undefined) return { pool: spec.defaultPool, pattern: undefined };
  const patterns = cutText(
    Object.values(spec.pools)
      .flatMap((pool) => pool.models)
      .join(', '),
  );
  throw new InvalidArgumentError('model', model, `a model of a pool of account ${accountName} (${patterns}) or a defaultPool`);
}
