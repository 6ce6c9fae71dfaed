import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { START_RETRY_MS_MIN, retryAtStart } from '../src/service.js';

const logger = pino({ level: 'silent' });
class Away extends Error {}

describe('retryAtStart', () => {
  it('retries a retryable failure with backoff until it succeeds, reporting each failure', async () => {
    let calls = 0;
    const failures: string[] = [];
    const started = performance.now();
    await retryAtStart(
      async () => {
        calls += 1;
        if (calls < 3) throw new Away(`away ${calls}`);
      },
      { timeoutMs: 10_000, logger, retryable: (error) => error instanceof Away, onFailure: (message) => failures.push(message) },
    );
    expect(calls).toBe(3);
    expect(failures).toEqual(['away 1', 'away 2']);
    expect(performance.now() - started).toBeGreaterThanOrEqual(START_RETRY_MS_MIN * 3 - 5); // waited 250 ms, then 500 ms
  });

  it('fails at once on a failure that is not retryable (a refused configuration)', async () => {
    let calls = 0;
    const refused = new Error('limits refused');
    await expect(
      retryAtStart(
        async () => {
          calls += 1;
          throw refused;
        },
        { timeoutMs: 10_000, logger, retryable: (error) => error instanceof Away },
      ),
    ).rejects.toBe(refused);
    expect(calls).toBe(1);
  });
});
