import { z } from 'zod';
import { mockOptionsSchema, type MockOptions } from './options.js';

/** A bad environment variable: the message names it and its value, so start-up fails with an obvious cause. */
export class MockEnvError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string | undefined,
    reason: string,
  ) {
    super(`${variable}=${JSON.stringify(value)} is invalid: ${reason}`);
    this.name = new.target.name;
  }
}

const wholeNumber = z.string().regex(/^\d+$/, 'expected a whole number').transform(Number);
const number = z
  .string()
  .regex(/^\d+(\.\d+)?$/, 'expected a non-negative number')
  .transform(Number);
const boolean = z.enum(['true', 'false', '1', '0']).transform((value) => value === 'true' || value === '1');
const keyList = z
  .string()
  .transform((value) => value.split(',').map((key) => key.trim()))
  .refine((keys) => keys.every((key) => key !== ''), 'expected a comma-separated list of non-empty keys');
const json = z.string().transform((value, context) => {
  try {
    return JSON.parse(value) as unknown;
  } catch {
    context.addIssue({ code: 'custom', message: 'expected JSON' });
    return z.NEVER;
  }
});

/** One variable: its name, where it goes in the options, and how its text is read (bounds come from the options schema). */
interface EnvVariable {
  name: string;
  path: readonly string[];
  parse: z.ZodType<unknown, string>;
}

/** Every variable the process entry reads; unset or empty variables keep the library defaults. */
export const MOCK_ENV_VARIABLES: readonly EnvVariable[] = [
  { name: 'PORT', path: ['port'], parse: wholeNumber },
  { name: 'HOST', path: ['host'], parse: z.string() },
  { name: 'MOCK_BODY_LIMIT_BYTES', path: ['bodyLimitBytes'], parse: wholeNumber },
  { name: 'MOCK_SEED', path: ['seed'], parse: wholeNumber },
  { name: 'MOCK_API_KEYS', path: ['apiKeys'], parse: keyList },
  { name: 'MOCK_CONCURRENCY', path: ['limits', 'concurrency'], parse: wholeNumber },
  { name: 'MOCK_RPM', path: ['limits', 'rpm'], parse: wholeNumber },
  { name: 'MOCK_ITPM', path: ['limits', 'itpm'], parse: wholeNumber },
  { name: 'MOCK_OTPM', path: ['limits', 'otpm'], parse: wholeNumber },
  { name: 'MOCK_COUNT_TOKENS_RPM', path: ['limits', 'countTokensRpm'], parse: wholeNumber },
  { name: 'MOCK_BURST_RPM', path: ['limits', 'burst', 'rpm'], parse: wholeNumber },
  { name: 'MOCK_BURST_ITPM', path: ['limits', 'burst', 'itpm'], parse: wholeNumber },
  { name: 'MOCK_BURST_OTPM', path: ['limits', 'burst', 'otpm'], parse: wholeNumber },
  { name: 'MOCK_OTPM_MODE', path: ['limits', 'otpmMode'], parse: z.string() },
  { name: 'MOCK_ROUND_HEADERS', path: ['limits', 'roundHeaders'], parse: boolean },
  { name: 'MOCK_SPEND_CAP_TOKENS', path: ['limits', 'spendCapTokens'], parse: wholeNumber },
  /** `limits.pools` as JSON: `{"haiku":{"models":["claude-haiku-4*"],"rpm":50,"itpm":50000}}`. */
  { name: 'MOCK_POOLS', path: ['limits', 'pools'], parse: json },
  { name: 'MOCK_LATENCY_MS', path: ['latency', 'timeToFirstTokenMs'], parse: number },
  { name: 'MOCK_PER_TOKEN_MS', path: ['latency', 'perTokenMs'], parse: number },
  { name: 'MOCK_FAULT_RATE_429', path: ['faults', 'rate429'], parse: number },
  { name: 'MOCK_FAULT_RATE_529', path: ['faults', 'rate529'], parse: number },
  { name: 'MOCK_FAULT_RATE_500', path: ['faults', 'rate500'], parse: number },
  { name: 'MOCK_FAULT_RATE_504', path: ['faults', 'rate504'], parse: number },
  { name: 'MOCK_FAULT_RATE_MID_STREAM_ERROR', path: ['faults', 'rateMidStreamError'], parse: number },
  { name: 'MOCK_FAULT_RATE_RESET', path: ['faults', 'rateReset'], parse: number },
  { name: 'MOCK_FAULT_RATE_RESET_MID_STREAM', path: ['faults', 'rateResetMidStream'], parse: number },
  { name: 'MOCK_FAULT_RATE_SLOW_HEADERS', path: ['faults', 'rateSlowHeaders'], parse: number },
  { name: 'MOCK_REQUEST_LOG_SIZE', path: ['requestLog', 'size'], parse: wholeNumber },
  { name: 'LOG_LEVEL', path: ['logLevel'], parse: z.string() },
];

function setPath(target: Record<string, unknown>, path: readonly string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const child = node[key];
    if (typeof child === 'object' && child !== null) node = child as Record<string, unknown>;
    else node = node[key] = {};
  }
  const last = path.at(-1);
  if (last !== undefined) node[last] = value;
}

function startsWith(path: readonly PropertyKey[], prefix: readonly string[]): boolean {
  return prefix.every((key, i) => path[i] === key);
}

/**
 * Reads the mock's options from environment variables (see {@link MOCK_ENV_VARIABLES}).
 * @throws {@link MockEnvError} naming the first invalid variable and its value.
 */
export function parseMockEnv(env: Readonly<Record<string, string | undefined>>): MockOptions {
  const options: Record<string, unknown> = {};
  const used: EnvVariable[] = [];
  for (const variable of MOCK_ENV_VARIABLES) {
    const raw = env[variable.name];
    if (raw === undefined || raw.trim() === '') continue;
    const parsed = variable.parse.safeParse(raw.trim());
    if (!parsed.success) throw new MockEnvError(variable.name, raw, parsed.error.issues[0]?.message ?? 'invalid value');
    setPath(options, variable.path, parsed.data);
    used.push(variable);
  }
  const checked = mockOptionsSchema.safeParse(options);
  if (checked.success) return options as MockOptions;
  const issue = checked.error.issues[0];
  const path = issue?.path ?? [];
  // The most specific variable under the failing path is to blame; a section-wide rule (rates summing to > 1) names the first one set.
  const culprit = used.find((variable) => startsWith(variable.path, path.map(String))) ?? used.find((variable) => startsWith(path, variable.path));
  const name = culprit?.name ?? 'environment';
  throw new MockEnvError(name, culprit === undefined ? undefined : env[name], issue?.message ?? 'invalid value');
}
