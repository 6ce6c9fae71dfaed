import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InvalidConfigError } from '@tollgate/limiter';
import { describe, expect, it } from 'vitest';
import { accountOf, documentSource, parseLimitsDocument, readLimitsDocument, validateLimitsDocument, type LimitsDocumentInput } from '../src/index.js';

/** DESIGN §8's document, as written there. */
const DESIGN_EXAMPLE = `
accounts:
  main:
    apiKeyEnv: ANTHROPIC_API_KEY
    baseUrl: https://api.anthropic.com
    concurrency: 8
    pools:
      opus-4:   { models: ['claude-opus-4*'],   rpm: 4000, itpm: 2000000, otpm: 400000 }
      sonnet-4: { models: ['claude-sonnet-4*'], rpm: 4000, itpm: 2000000, otpm: 400000 }
      haiku-4:  { models: ['claude-haiku-4*'],  rpm: 4000, itpm: 4000000, otpm: 800000 }
    countTokens: { rpm: 2000 }
tenants:
  search: { tokenEnv: TOKEN_SEARCH, account: main, weight: 3, maxPriority: 1 }
  batch:  { tokenEnv: TOKEN_BATCH,  account: main, weight: 1, concurrency: 4, budgets: { outputTokensPerDay: 20000000 } }
`;

/** The yaml blocks of docs/limits-document.md: the documentation's examples must parse as written. */
function docsExamples(): string[] {
  const text = readFileSync(new URL('../../../docs/limits-document.md', import.meta.url), 'utf8');
  return [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1] ?? '');
}

/** A small valid document to break one field of at a time. */
function base(): LimitsDocumentInput {
  return {
    accounts: { main: { apiKeyEnv: 'ANTHROPIC_API_KEY', concurrency: 4, pools: { sonnet: { models: ['claude-sonnet-4*'], rpm: 50, itpm: 30_000, otpm: 8_000 } } } },
    tenants: { search: { tokenEnv: 'TOKEN_SEARCH', account: 'main' } },
  };
}

function refusal(value: unknown): string {
  try {
    validateLimitsDocument(value, 'tollgate.yaml');
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidConfigError);
    return (error as Error).message;
  }
  throw new Error('the document was accepted');
}

describe('a good document', () => {
  it("parses DESIGN §8's example, with defaults filled in", () => {
    const document = parseLimitsDocument(DESIGN_EXAMPLE, 'tollgate.yaml');
    const main = accountOf(document).account;
    expect(main.concurrency).toBe(8);
    expect(main.leaseTtlMs).toBe(15_000);
    expect(Object.keys(main.pools)).toEqual(['opus-4', 'sonnet-4', 'haiku-4']);
    expect(main.pools['haiku-4']).toEqual({ models: ['claude-haiku-4*'], rpm: 4000, itpm: 4_000_000, otpm: 800_000 });
    expect(main.countTokens).toEqual({ rpm: 2000 });
    expect(document.tenants.search).toEqual({ tokenEnv: 'TOKEN_SEARCH', account: 'main', weight: 3, maxPriority: 1 });
    expect(document.tenants.batch).toEqual({ tokenEnv: 'TOKEN_BATCH', account: 'main', weight: 1, maxPriority: 0, concurrency: 4, budgets: { outputTokensPerDay: 20_000_000 } });
  });

  it('parses every example of docs/limits-document.md', () => {
    const examples = docsExamples();
    expect(examples.length).toBeGreaterThanOrEqual(2);
    for (const example of examples) expect(() => parseLimitsDocument(example, 'docs/limits-document.md')).not.toThrow();
  });

  it('takes JSON too, and several accounts', () => {
    const input = base();
    input.accounts.second = {
      apiKeyEnv: 'ANTHROPIC_API_KEY_2',
      baseUrl: 'http://127.0.0.1:4000',
      pools: { haiku: { models: ['claude-haiku-4-5'], rpm: 10 } },
      defaultPool: 'haiku',
    };
    const document = parseLimitsDocument(JSON.stringify(input), 'tollgate.json');
    expect(Object.keys(document.accounts)).toEqual(['main', 'second']);
    expect(accountOf(document, 'second').account.defaultPool).toBe('haiku');
    expect(() => accountOf(document)).toThrow(/2 accounts \(main, second\); name one/);
    expect(() => accountOf(document, 'third')).toThrow(/account "third" is not in the limits document \(accounts: main, second\)/);
  });
});

describe('each bad field is named with its path and value', () => {
  const cases: Array<[string, (input: LimitsDocumentInput) => void, RegExp]> = [
    ['accounts missing', (input) => delete (input as Partial<LimitsDocumentInput>).accounts, /^tollgate\.yaml is invalid: accounts: .* \(got undefined\)$/],
    ['no account', (input) => (input.accounts = {}), /accounts: at least one account \(got \{\}\)/],
    ['bad account name', (input) => (input.accounts['a{b}'] = input.accounts.main!), /accounts\.a\{b\}: an account name must match letters, digits and :\._-/],
    [
      'apiKeyEnv holds a key',
      (input) => (input.accounts.main!.apiKeyEnv = 'sk-ant-api03-abc'),
      /accounts\.main\.apiKeyEnv: expected the name of an environment variable .* \(got "sk-ant-api03-abc"\)/,
    ],
    ['baseUrl', (input) => (input.accounts.main!.baseUrl = 'ftp://x'), /accounts\.main\.baseUrl: .* \(got "ftp:\/\/x"\)/],
    ['baseUrl password masked', (input) => (input.accounts.main!.baseUrl = 'ftp://user:secret@host'), /\(got "ftp:\/\/\*\*\*@host"\)/],
    ['concurrency', (input) => (input.accounts.main!.concurrency = 0), /accounts\.main\.concurrency: Too small: expected number to be >=1 \(got 0\)/],
    [
      'concurrency type',
      (input) => ((input.accounts.main as Record<string, unknown>).concurrency = '8'),
      /accounts\.main\.concurrency: Invalid input: expected number, received string \(got "8"\)/,
    ],
    ['no pools', (input) => (input.accounts.main!.pools = {}), /accounts\.main\.pools: at least one pool \(got \{\}\)/],
    [
      'bad pool name',
      (input) => (input.accounts.main!.pools['a:b'] = { models: ['x'], rpm: 1 }),
      /accounts\.main\.pools\.a:b: a pool name must match letters, digits and \._- \(no ":" or braces\)/,
    ],
    ['rpm', (input) => (input.accounts.main!.pools.sonnet!.rpm = -5), /accounts\.main\.pools\.sonnet\.rpm: Too small: .* \(got -5\)/],
    ['itpm fraction', (input) => (input.accounts.main!.pools.sonnet!.itpm = 1.5), /accounts\.main\.pools\.sonnet\.itpm: Invalid input: expected int, received number \(got 1\.5\)/],
    [
      'otpm written with underscores (a string in YAML)',
      (input) => ((input.accounts.main!.pools.sonnet as Record<string, unknown>).otpm = '8_000'),
      /accounts\.main\.pools\.sonnet\.otpm: .* \(got "8_000"\)/,
    ],
    ['burst', (input) => (input.accounts.main!.pools.sonnet!.burst = { rpm: 0 }), /accounts\.main\.pools\.sonnet\.burst\.rpm: Too small: .* \(got 0\)/],
    [
      'burst without its limit',
      (input) => (input.accounts.main!.pools.sonnet = { models: ['claude-sonnet-4*'], rpm: 5, burst: { itpm: 1000 } }),
      /accounts\.main\.pools\.sonnet\.burst\.itpm: a burst needs the pool's itpm \(got 1000\)/,
    ],
    ['no models', (input) => (input.accounts.main!.pools.sonnet!.models = []), /accounts\.main\.pools\.sonnet\.models: Too small: .* \(got \[\]\)/],
    [
      'bad pattern',
      (input) => (input.accounts.main!.pools.sonnet!.models = ['claude sonnet?']),
      /accounts\.main\.pools\.sonnet\.models\.0: a model pattern is .* \(got "claude sonnet\?"\)/,
    ],
    [
      'a pattern in two pools',
      (input) => (input.accounts.main!.pools.other = { models: ['claude-haiku-4*', 'claude-sonnet-4*'], rpm: 5 }),
      /accounts\.main\.pools\.other\.models\.1: a model pattern belongs to one pool of an account; it is also in pool sonnet \(got "claude-sonnet-4\*"\)/,
    ],
    [
      'a pattern twice in one pool',
      (input) => (input.accounts.main!.pools.sonnet!.models = ['claude-sonnet-4*', 'claude-sonnet-4*']),
      /pools\.sonnet\.models\.1: .* it is twice in this pool/,
    ],
    ['defaultPool', (input) => (input.accounts.main!.defaultPool = 'opus'), /accounts\.main\.defaultPool: not a pool of account main \(pools: sonnet\) \(got "opus"\)/],
    ['countTokens', (input) => (input.accounts.main!.countTokens = { rpm: 0 }), /accounts\.main\.countTokens\.rpm: Too small: .* \(got 0\)/],
    ['leaseTtlMs', (input) => (input.accounts.main!.leaseTtlMs = 100), /accounts\.main\.leaseTtlMs: Too small: expected number to be >=500 \(got 100\)/],
    [
      'two accounts, one key at one upstream',
      (input) => (input.accounts.copy = { ...input.accounts.main!, baseUrl: 'https://api.anthropic.com/' }),
      /accounts\.copy\.apiKeyEnv: account main uses the same key at the same baseUrl; one key is one account \(got "ANTHROPIC_API_KEY"\)/,
    ],
    [
      'no limit at all',
      (input) => (input.accounts.main = { apiKeyEnv: 'K', pools: { all: { models: ['*'] } } }),
      /accounts\.main\.concurrency: set concurrency, a pool limit \(rpm, itpm, otpm\), or both \(got undefined\)/,
    ],
    [
      'unknown account key',
      (input) => ((input.accounts.main as Record<string, unknown>).apiKey = 'sk-ant-secret'),
      /accounts\.main: Unrecognized key: "apiKey" \(got "sk-ant-secret"\)/,
    ],
    ['unknown pool key', (input) => ((input.accounts.main!.pools.sonnet as Record<string, unknown>).tpm = 5), /accounts\.main\.pools\.sonnet: Unrecognized key: "tpm" \(got 5\)/],
    ['unknown top-level key', (input) => ((input as Record<string, unknown>).limits = {}), /\(root\): Unrecognized key: "limits" \(got \{\}\)/],
    ['bad tenant name', (input) => (input.tenants!['a b'] = { tokenEnv: 'T2', account: 'main' }), /tenants\.a b: a tenant name must match/],
    ['tenant account', (input) => (input.tenants!.search!.account = 'nope'), /tenants\.search\.account: not an account of this document \(accounts: main\) \(got "nope"\)/],
    ['tenant tokenEnv', (input) => (input.tenants!.search!.tokenEnv = ''), /tenants\.search\.tokenEnv: expected the name of an environment variable .* \(got ""\)/],
    [
      'two tenants, one token variable',
      (input) => (input.tenants!.batch = { tokenEnv: 'TOKEN_SEARCH', account: 'main' }),
      /tenants\.batch\.tokenEnv: tenant search reads its token from the same variable \(got "TOKEN_SEARCH"\)/,
    ],
    ["a tenant token in the API key's variable", (input) => (input.tenants!.search!.tokenEnv = 'ANTHROPIC_API_KEY'), /tenants\.search\.tokenEnv: is an account's apiKeyEnv/],
    ['weight', (input) => (input.tenants!.search!.weight = 0), /tenants\.search\.weight: Too small: .* \(got 0\)/],
    [
      'an account name too long for its count_tokens limiter',
      (input) => {
        const account = input.accounts.main!;
        input.accounts = { ['a'.repeat(190)]: { ...account, countTokens: { rpm: 10 } } };
        input.tenants = {};
      },
      /accounts\.a+\.… \(11 more characters\): needs an account name of at most 187 characters \(its limiter is named <account>:count-tokens\)/, // the long path cut
    ],
    ['a vanishing weight', (input) => (input.tenants!.search!.weight = 5e-324), /tenants\.search\.weight: Too small: expected number to be >=0\.001 \(got 5e-324\)/],
    ['maxPriority', (input) => (input.tenants!.search!.maxPriority = 10), /tenants\.search\.maxPriority: Too big: expected number to be <=9 \(got 10\)/],
    ['tenant concurrency', (input) => (input.tenants!.search!.concurrency = 0), /tenants\.search\.concurrency: Too small: .* \(got 0\)/],
    ['budget', (input) => (input.tenants!.search!.budgets = { outputTokensPerDay: -1 }), /tenants\.search\.budgets\.outputTokensPerDay: Too small: .* \(got -1\)/],
    ['unknown budget', (input) => (input.tenants!.search!.budgets = { dollarsPerDay: 5 } as never), /tenants\.search\.budgets: Unrecognized key: "dollarsPerDay" \(got 5\)/],
    // review: account main's count_tokens limiter is 'main:count-tokens'; an account of that name would share its keys
    [
      "an account named like another's count_tokens limiter",
      (input) => (input.accounts['main:count-tokens'] = { apiKeyEnv: 'OTHER_KEY', concurrency: 1, pools: { all: { models: ['*'] } } }),
      /accounts\.main:count-tokens: an account name may not end in :count-tokens/,
    ],
  ];
  it.each(cases)('%s', (_name, breakIt, expected) => {
    const input = base();
    breakIt(input);
    expect(refusal(input)).toMatch(expected);
  });

  it('names every bad field of one document at once, and cuts long values', () => {
    const input = base();
    input.accounts.main!.concurrency = 0;
    input.accounts.main!.pools.sonnet!.rpm = 0;
    input.tenants!.search!.account = 'x'.repeat(5_000);
    const message = refusal(input);
    expect(message).toContain('accounts.main.concurrency:');
    expect(message).toContain('accounts.main.pools.sonnet.rpm:');
    expect(message).toContain('tenants.search.account:');
    expect(message).toContain('(4802 more characters)'); // 5,002 characters of JSON, 200 shown
    expect(message.length).toBeLessThan(1_500);
  });
});

describe('text and files', () => {
  it('refuses YAML that does not parse, and duplicate keys, naming the source', () => {
    expect(() => parseLimitsDocument('accounts: [', 'ops/tollgate.yaml')).toThrow(/^ops\/tollgate\.yaml is not YAML or JSON: /);
    expect(() => parseLimitsDocument('accounts: {}\naccounts: {}\n', 'tollgate.yaml')).toThrow(/is not YAML or JSON: Map keys must be unique/);
    expect(() => parseLimitsDocument('', 'tollgate.yaml')).toThrow(/tollgate\.yaml is invalid: \(root\): .*\(got null\)/);
  });

  it('refuses an alias bomb (nested YAML aliases) before expanding it', () => {
    const lines = ['a: &a [x, x, x, x, x, x, x, x, x, x]'];
    for (let level = 1; level < 10; level += 1) {
      const name = String.fromCharCode(97 + level);
      const previous = String.fromCharCode(96 + level);
      lines.push(`${name}: &${name} [${Array.from({ length: 10 }, () => `*${previous}`).join(', ')}]`); // 10^10 items if expanded
    }
    expect(() => parseLimitsDocument(lines.join('\n'), 'laughs.yaml')).toThrow(/^laughs\.yaml is not YAML or JSON: Excessive alias count/);
  });

  it('refuses an account, a pool or a tenant named __proto__ (zod drops such a record key unchecked), naming it', () => {
    const account = 'accounts:\n  main: { apiKeyEnv: K, concurrency: 4, pools: { all: { models: ["*"] } } }\n';
    // the tenant's account does not exist: were the tenant dropped, nothing would say so
    expect(() => parseLimitsDocument(`${account}tenants:\n  __proto__: { tokenEnv: T, account: nope }\n`, 'tollgate.yaml')).toThrow(
      /tenants\.__proto__: "__proto__" is not a name \(got \{"tokenEnv":"T","account":"nope"\}\)/,
    );
    expect(() =>
      validateLimitsDocument(
        JSON.parse('{"accounts":{"main":{"apiKeyEnv":"K","concurrency":4,"pools":{"all":{"models":["*"]}}}},"tenants":{"__proto__":{"tokenEnv":"T","account":"main"}}}'),
      ),
    ).toThrow(/tenants\.__proto__:/);
    expect(() => parseLimitsDocument(`${account}  __proto__: { apiKeyEnv: K2, concurrency: 1, pools: { all: { models: ["*"] } } }\n`, 'tollgate.yaml')).toThrow(
      /accounts\.__proto__: "__proto__" is not a name/,
    );
    expect(() =>
      parseLimitsDocument(`accounts:\n  main: { apiKeyEnv: K, concurrency: 4, pools: { all: { models: ["*"] }, __proto__: { models: ["claude-*"], rpm: 0 } } }\n`, 'tollgate.yaml'),
    ).toThrow(/accounts\.main\.pools\.__proto__: "__proto__" is not a name/);
    // other Object.prototype names are ordinary names
    const names = parseLimitsDocument(
      `accounts:\n  constructor: { apiKeyEnv: K, concurrency: 4, pools: { toString: { models: ["*"] } } }\ntenants:\n  hasOwnProperty: { tokenEnv: T, account: constructor }\n`,
      'tollgate.yaml',
    );
    expect(Object.keys(names.tenants)).toEqual(['hasOwnProperty']);
    expect(accountOf(names).name).toBe('constructor');
  });

  it('refuses a document larger than 1 MiB', () => {
    expect(() => parseLimitsDocument(`# ${'x'.repeat(1024 * 1024)}`, 'big.yaml')).toThrow(/big\.yaml is larger than 1048576 bytes/);
  });

  it('reads TOLLGATE_CONFIG, else tollgate.yaml in the working directory, else the environment', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tollgate-config-'));
    expect(documentSource({}, dir)).toEqual({ kind: 'environment' });
    writeFileSync(join(dir, 'tollgate.yaml'), DESIGN_EXAMPLE);
    expect(documentSource({}, dir)).toEqual({ kind: 'file', path: join(dir, 'tollgate.yaml') });
    expect(documentSource({ TOLLGATE_CONFIG: '/etc/tollgate/limits.yaml' }, dir)).toEqual({ kind: 'file', path: '/etc/tollgate/limits.yaml' });
    expect(Object.keys((await readLimitsDocument(join(dir, 'tollgate.yaml'))).accounts)).toEqual(['main']);
    await expect(readLimitsDocument(join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read limits document ".*missing\.yaml": ENOENT/);
    writeFileSync(join(dir, 'bad.yaml'), 'accounts:\n  main: { apiKeyEnv: K, concurrency: 0, pools: { all: { models: ["*"] } } }\n');
    await expect(readLimitsDocument(join(dir, 'bad.yaml'))).rejects.toThrow(/bad\.yaml is invalid: accounts\.main\.concurrency: Too small: expected number to be >=1 \(got 0\)/);
  });
});
