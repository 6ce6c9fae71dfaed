import { InvalidArgumentError, InvalidConfigError } from '@tollgate/limiter';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { matchPool, patternConflicts, patternMatches, patternSpecificity, resolvePool, type PoolsSpec } from '../src/index.js';

/** Anthropic's pools (anthropic-api.md §3) plus a catch-all, as an account would state them. */
const ACCOUNT: PoolsSpec = {
  pools: {
    'opus-4': { models: ['claude-opus-4*'] },
    'sonnet-4': { models: ['claude-sonnet-4*'] },
    'haiku-4': { models: ['claude-haiku-4*', 'claude-3-5-haiku-20241022'] },
    'sonnet-5': { models: ['claude-sonnet-5*'] },
  },
};

describe('patternMatches', () => {
  it.each([
    ['claude-sonnet-4*', 'claude-sonnet-4-6', true],
    ['claude-sonnet-4*', 'claude-sonnet-4-5-20250929', true],
    ['claude-sonnet-4*', 'claude-sonnet-4', true],
    ['claude-sonnet-4*', 'claude-sonnet-5', false],
    ['claude-sonnet-4*', 'x-claude-sonnet-4', false],
    ['*', '', true],
    ['*', 'anything', true],
    ['claude-*-4-5', 'claude-haiku-4-5', true],
    ['claude-*-4-5', 'claude-haiku-4-5-2025', false],
    ['*haiku*', 'claude-3-5-haiku-20241022', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'acb', false],
    ['a*a', 'a', false], // prefix and suffix may not overlap
    ['ab*ba', 'aba', false],
    ['claude-haiku-4-5', 'claude-haiku-4-5', true],
    ['claude-haiku-4-5', 'claude-haiku-4-50', false],
    ['claude.opus', 'claudeXopus', false], // `.` is literal, not a regex
  ])('%s against %s: %s', (pattern, model, expected) => {
    expect(patternMatches(pattern, model)).toBe(expected);
  });

  it('ranks an exact id above a glob with the same literal characters', () => {
    expect(patternSpecificity('claude-haiku-4-5')).toBeGreaterThan(patternSpecificity('claude-haiku-4-5*'));
    expect(patternSpecificity('claude-haiku-4*')).toBeGreaterThan(patternSpecificity('claude-*'));
    expect(patternSpecificity('*')).toBe(0);
  });
});

describe('resolvePool', () => {
  it.each([
    ['claude-opus-4-6', 'opus-4', 'claude-opus-4*'],
    ['claude-opus-4-1', 'opus-4', 'claude-opus-4*'],
    ['claude-sonnet-4-5', 'sonnet-4', 'claude-sonnet-4*'],
    ['claude-sonnet-5', 'sonnet-5', 'claude-sonnet-5*'],
    ['claude-haiku-4-5', 'haiku-4', 'claude-haiku-4*'],
    ['claude-3-5-haiku-20241022', 'haiku-4', 'claude-3-5-haiku-20241022'],
  ])('%s goes to %s', (model, pool, pattern) => {
    expect(resolvePool(ACCOUNT, model, 'main')).toEqual({ pool, pattern });
  });

  it('the most specific pattern wins, whatever the order of the pools', () => {
    const catchAllFirst: PoolsSpec = { pools: { rest: { models: ['claude-*'] }, haiku: { models: ['claude-haiku-4*'] }, pinned: { models: ['claude-haiku-4-5'] } } };
    const catchAllLast: PoolsSpec = { pools: { pinned: { models: ['claude-haiku-4-5'] }, haiku: { models: ['claude-haiku-4*'] }, rest: { models: ['claude-*'] } } };
    for (const spec of [catchAllFirst, catchAllLast]) {
      expect(resolvePool(spec, 'claude-haiku-4-5', 'main').pool).toBe('pinned');
      expect(resolvePool(spec, 'claude-haiku-4-6', 'main').pool).toBe('haiku');
      expect(resolvePool(spec, 'claude-opus-4-6', 'main').pool).toBe('rest');
    }
  });

  it('refuses a model two pools match equally, naming both', () => {
    const spec: PoolsSpec = { pools: { a: { models: ['claude-*-4-5'] }, b: { models: ['claude-h*-4-5'] }, c: { models: ['claude-*aiku-4-5'] } } };
    expect(resolvePool(spec, 'claude-haiku-4-5', 'main').pool).toBe('c'); // 15 literal characters beat 12 and 11
    const tied: PoolsSpec = { pools: { a: { models: ['claude-*-4-5'] }, b: { models: ['claude-4-*-5'] } } };
    expect(() => matchPool(tied, 'claude-4-4-5')).toThrow(InvalidConfigError);
    expect(() => matchPool(tied, 'claude-4-4-5')).toThrow(
      'model "claude-4-4-5" matches pool a ("claude-*-4-5") and pool b ("claude-4-*-5") equally; make one pattern more specific',
    );
    // two patterns of one pool matching equally are no conflict
    expect(matchPool({ pools: { a: { models: ['claude-*-4-5', 'claude-4-*-5'] } } }, 'claude-4-4-5')?.pool).toBe('a');
  });

  it('a pattern spelled again with a run of stars (`**` is `*`) is the same pattern: refused as listed twice, not an error at every call', () => {
    const pools = { haiku: { models: ['claude-haiku-4*'] }, copy: { models: ['claude-haiku-4**'] } };
    expect(() => matchPool({ pools }, 'claude-haiku-4-5')).toThrow(InvalidConfigError); // every haiku model, at call time
    expect(patternConflicts(pools)).toEqual([{ pool: 'copy', index: 0, pattern: 'claude-haiku-4**', firstPool: 'haiku' }]);
    expect(patternConflicts({ one: { models: ['a*b', 'a**b'] } })).toHaveLength(1);
    expect(patternConflicts({ one: { models: ['a*b', 'a*-b'] } })).toEqual([]);
  });

  it('no match: the default pool, else an error naming the model and the patterns', () => {
    expect(resolvePool({ ...ACCOUNT, defaultPool: 'sonnet-4' }, 'claude-3-opus-20240229', 'main')).toEqual({ pool: 'sonnet-4', pattern: undefined });
    let error: unknown;
    try {
      resolvePool(ACCOUNT, 'gpt-4o', 'main');
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(InvalidArgumentError);
    expect((error as InvalidArgumentError).code).toBe('INVALID_ARGUMENT');
    expect((error as Error).message).toBe(
      'model: expected a model of a pool of account main (claude-opus-4*, claude-sonnet-4*, claude-haiku-4*, claude-3-5-haiku-20241022, claude-sonnet-5*) or a defaultPool (got "gpt-4o")',
    );
  });

  it('cuts a long model name and a long pattern list in the error', () => {
    const many: PoolsSpec = { pools: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`p${i}`, { models: [`claude-family-number-${i}-*`] }])) };
    expect(() => resolvePool(many, 'm'.repeat(10_000), 'main')).toThrow(/more characters\)\) or a defaultPool \(got "m{199}… \(\d+ more characters\)\)$/);
  });
});

describe('patternMatches against a reference (fast-check)', () => {
  /** The glob as a regular expression: literal text, `*` as `.*`, the whole id. */
  const reference = (pattern: string, model: string) =>
    new RegExp(
      `^${pattern
        .split('*')
        .map((part) => part.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'))
        .join('.*')}$`,
      's',
    ).test(model);
  // a small alphabet so that patterns and ids collide often
  const text = (maxLength: number) => fc.string({ unit: fc.constantFrom('a', 'b', '-', '4', '.'), maxLength });
  const pattern = fc.array(text(4), { minLength: 1, maxLength: 4 }).map((parts) => parts.join('*'));

  it('agrees with the regular expression on every pattern and id', () => {
    fc.assert(
      fc.property(pattern, text(10), (glob, model) => patternMatches(glob, model) === reference(glob, model)),
      { numRuns: 5_000 },
    );
  });

  it('a pattern matches every id made by filling its stars', () => {
    fc.assert(
      fc.property(fc.array(text(4), { minLength: 1, maxLength: 4 }), fc.array(text(3), { minLength: 3, maxLength: 3 }), (parts, fills) => {
        const model = parts.map((part, i) => (i === 0 ? part : `${fills[(i - 1) % fills.length] ?? ''}${part}`)).join('');
        return patternMatches(parts.join('*'), model);
      }),
      { numRuns: 2_000 },
    );
  });
});
