import { describe, expect, it } from 'vitest';
import { canonicalDocument, describeDocumentChanges, diffLimitsDocuments, validateLimitsDocument, type LimitsDocumentInput } from '../src/index.js';

function document(change: (input: LimitsDocumentInput) => void = () => {}) {
  const input: LimitsDocumentInput = {
    accounts: {
      main: {
        apiKeyEnv: 'ANTHROPIC_API_KEY',
        concurrency: 8,
        pools: {
          'sonnet-4': { models: ['claude-sonnet-4*'], rpm: 4000, itpm: 2_000_000, otpm: 400_000 },
          'haiku-4': { models: ['claude-haiku-4*', 'claude-3-5-haiku-20241022'], rpm: 4000, itpm: 4_000_000, otpm: 800_000 },
        },
        countTokens: { rpm: 2000 },
      },
    },
    tenants: { search: { tokenEnv: 'TOKEN_SEARCH', account: 'main', weight: 3 } },
  };
  change(input);
  return validateLimitsDocument(input);
}

describe('diffLimitsDocuments', () => {
  it('no changes between equal documents, whatever their key order, pattern order or stated defaults', () => {
    const reordered = document((input) => {
      const main = input.accounts.main!;
      input.accounts.main = {
        countTokens: main.countTokens!,
        pools: { 'haiku-4': { ...main.pools['haiku-4']!, models: ['claude-3-5-haiku-20241022', 'claude-haiku-4*'] }, 'sonnet-4': main.pools['sonnet-4']! },
        concurrency: 8,
        apiKeyEnv: 'ANTHROPIC_API_KEY',
        baseUrl: 'https://api.anthropic.com',
        leaseTtlMs: 15_000,
      };
      input.tenants!.search!.maxPriority = 0;
    });
    expect(diffLimitsDocuments(document(), reordered)).toEqual([]);
    expect(canonicalDocument(reordered)).toEqual(canonicalDocument(document()));
  });

  it('a pool or tenant named like an Object.prototype member (toString, constructor) added or removed is absent on the other side', () => {
    const added = document((input) => {
      Object.assign(input.accounts.main!.pools, { constructor: { models: ['claude-opus-4*'], rpm: 10 } });
      Object.assign(input.tenants!, { toString: { tokenEnv: 'TOKEN_OTHER', account: 'main' } });
    });
    const changes = diffLimitsDocuments(document(), added);
    expect(changes.map((change) => change.path)).toEqual(['accounts.main.pools.constructor', 'tenants.toString']);
    expect(changes.every((change) => change.before === undefined)).toBe(true);
    expect(describeDocumentChanges(changes)[1]).toMatch(/^tenants\.toString: \(none\) → \{/);
    expect(diffLimitsDocuments(added, document()).every((change) => change.after === undefined)).toBe(true);
  });

  it('names each changed field by account, pool and field', () => {
    const next = document((input) => {
      input.accounts.main!.concurrency = 4;
      input.accounts.main!.pools['sonnet-4']!.itpm = 1_000_000;
      input.accounts.main!.pools['haiku-4']!.burst = { otpm: 100_000 };
      input.accounts.main!.pools['sonnet-4']!.models = ['claude-sonnet-4*', 'claude-sonnet-4-5-20250929'];
      delete input.accounts.main!.countTokens;
      input.tenants!.search!.weight = 1;
    });
    const changes = diffLimitsDocuments(document(), next);
    expect(changes).toEqual([
      { path: 'accounts.main.concurrency', before: 8, after: 4 },
      { path: 'accounts.main.countTokens', before: { rpm: 2000 }, after: undefined },
      { path: 'accounts.main.pools.haiku-4.burst', before: undefined, after: { otpm: 100_000 } },
      { path: 'accounts.main.pools.sonnet-4.itpm', before: 2_000_000, after: 1_000_000 },
      { path: 'accounts.main.pools.sonnet-4.models', before: ['claude-sonnet-4*'], after: ['claude-sonnet-4*', 'claude-sonnet-4-5-20250929'] },
      { path: 'tenants.search.weight', before: 3, after: 1 },
    ]);
    expect(describeDocumentChanges(changes)).toEqual([
      'accounts.main.concurrency: 8 → 4',
      'accounts.main.countTokens: {"rpm":2000} → (none)',
      'accounts.main.pools.haiku-4.burst: (none) → {"otpm":100000}',
      'accounts.main.pools.sonnet-4.itpm: 2000000 → 1000000',
      'accounts.main.pools.sonnet-4.models: ["claude-sonnet-4*"] → ["claude-sonnet-4*","claude-sonnet-4-5-20250929"]',
      'tenants.search.weight: 3 → 1',
    ]);
    expect(canonicalDocument(next).hash).not.toBe(canonicalDocument(document()).hash);
    expect(canonicalDocument(next).hash).toMatch(/^[0-9a-f]{16}$/);
  });

  it('an added or removed pool, account or tenant is one change holding it whole', () => {
    const next = document((input) => {
      delete input.accounts.main!.pools['haiku-4'];
      input.accounts.main!.pools['opus-4'] = { models: ['claude-opus-4*'], rpm: 50 };
      input.accounts.second = { apiKeyEnv: 'KEY_2', pools: { all: { models: ['*'], rpm: 5 } } };
      input.tenants = {};
    });
    const changes = diffLimitsDocuments(document(), next);
    expect(changes.map((change) => change.path)).toEqual(['accounts.main.pools.haiku-4', 'accounts.main.pools.opus-4', 'accounts.second', 'tenants.search']);
    expect(changes[1]).toEqual({ path: 'accounts.main.pools.opus-4', before: undefined, after: { models: ['claude-opus-4*'], rpm: 50 } });
    expect(changes[2]?.after).toEqual({ apiKeyEnv: 'KEY_2', baseUrl: 'https://api.anthropic.com', leaseTtlMs: 15_000, pools: { all: { models: ['*'], rpm: 5 } } });
    expect(changes[3]).toEqual({ path: 'tenants.search', before: { account: 'main', maxPriority: 0, tokenEnv: 'TOKEN_SEARCH', weight: 3 }, after: undefined });
  });
});
