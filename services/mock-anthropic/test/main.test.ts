import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { MockEnvError, parseMockEnv } from '../src/env.js';
import { MOCK_ENTRY, entryCommand } from '@tollgate/test-support';
import { clientFor, request } from './helpers.js';

const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const MAIN = entryCommand(MOCK_ENTRY);
/** Generous: tsx compiles main.ts on a busy machine before it listens. */
const START_DEADLINE_MS = 20_000;

describe('parseMockEnv', () => {
  it('reads limits, latency, faults and keys', () => {
    expect(
      parseMockEnv({
        PORT: '0',
        MOCK_RPM: '60',
        MOCK_BURST_RPM: '5',
        MOCK_OTPM_MODE: 'actual',
        MOCK_ROUND_HEADERS: 'false',
        MOCK_API_KEYS: 'a, b',
        MOCK_LATENCY_MS: '12.5',
        MOCK_FAULT_RATE_529: '0.1',
        MOCK_SEED: '',
      }),
    ).toEqual({
      port: 0,
      apiKeys: ['a', 'b'],
      limits: { rpm: 60, burst: { rpm: 5 }, otpmMode: 'actual', roundHeaders: false },
      latency: { timeToFirstTokenMs: 12.5 },
      faults: { rate529: 0.1 },
    });
  });

  const bad = [
    ['MOCK_RPM', 'sixty'],
    ['MOCK_RPM', '0'],
    ['PORT', '70000'],
    ['MOCK_OTPM_MODE', 'sometimes'],
    ['MOCK_FAULT_RATE_500', '1.5'],
    ['MOCK_API_KEYS', 'a,,b'],
    ['MOCK_ROUND_HEADERS', 'maybe'],
    ['MOCK_POOLS', '{haiku'],
    ['MOCK_POOLS', '{"haiku":{"models":[],"rpm":5}}'],
  ] as const;
  for (const [variable, value] of bad) {
    it(`rejects ${variable}=${value}, naming both`, () => {
      let error: unknown;
      try {
        parseMockEnv({ [variable]: value });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(MockEnvError);
      expect((error as MockEnvError).variable).toBe(variable);
      expect((error as Error).message).toContain(`${variable}=${JSON.stringify(value)}`);
    });
  }

  it('reads model pools as JSON', () => {
    expect(parseMockEnv({ MOCK_POOLS: '{"haiku":{"models":["claude-haiku-4*"],"rpm":50,"itpm":50000}}' })).toEqual({
      limits: { pools: { haiku: { models: ['claude-haiku-4*'], rpm: 50, itpm: 50_000 } } },
    });
  });

  it('names a fault rate when the rates add up to more than 1', () => {
    expect(() => parseMockEnv({ MOCK_FAULT_RATE_529: '0.7', MOCK_FAULT_RATE_500: '0.7' })).toThrow(/MOCK_FAULT_RATE_529="0.7".*at most 1/);
  });
});

/** Resolves with the URL the child prints, or rejects when it exits first. */
async function waitForUrl(child: ChildProcess): Promise<string> {
  let output = '';
  const deadline = AbortSignal.timeout(START_DEADLINE_MS);
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /^listening on (http:\/\/\S+)$/m.exec(output);
      if (match?.[1] !== undefined) resolve(match[1]);
    });
    child.once('exit', (code) => reject(new Error(`main exited with ${code}: ${output}`)));
    deadline.addEventListener('abort', () => reject(new Error(`main printed no URL in time: ${output}`)));
  });
}

describe('main as a process', () => {
  it('prints its URL, answers the SDK and exits cleanly on SIGTERM', async () => {
    const child = spawn(MAIN.command, MAIN.args, { cwd: REPO_ROOT, env: { ...process.env, PORT: '0', MOCK_RPM: '600', LOG_LEVEL: 'warn' } });
    try {
      const url = await waitForUrl(child);
      const { data, response } = await clientFor({ url }).messages.create(request()).withResponse();
      expect(data.type).toBe('message');
      expect(response.headers.get('anthropic-ratelimit-requests-limit')).toBe('600');
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = (await exited) as [number | null];
      expect(code).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('fails at start naming a bad variable', async () => {
    const child = spawn(MAIN.command, MAIN.args, { cwd: REPO_ROOT, env: { ...process.env, MOCK_ITPM: 'lots' } });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toContain('MOCK_ITPM="lots"');
  });
});
