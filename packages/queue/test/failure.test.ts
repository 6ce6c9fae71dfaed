import { BudgetExceededError, CostExceedsCapacityError, InvalidArgumentError, LimiterUnavailableError } from '@tollgate/limiter';
import { describe, expect, it } from 'vitest';
import { describeFailure } from '../src/failure.js';

describe('describeFailure: limiter errors', () => {
  it('a bad argument (InvalidArgumentError) fails the job at once with a 400, like a cost that can never fit', () => {
    for (const error of [new InvalidArgumentError('priority', 12, 'an integer from 0 to 9'), new CostExceedsCapacityError('l', 'inputTokens', 10, 5)]) {
      expect(describeFailure(error)).toMatchObject({ status: 400, retryable: false });
    }
  });

  it("a tenant's exhausted budget fails the job at once: a 429 rate_limit_error with the code tenant_budget_exceeded and retry-after in whole seconds", () => {
    const expected = {
      status: 429,
      retryable: false,
      body: { type: 'error', error: { type: 'rate_limit_error', details: { error_code: 'tenant_budget_exceeded' } } },
      headers: { 'retry-after': '17281' },
    };
    expect(describeFailure(new BudgetExceededError('l', 'batch', 'outputTokensPerDay', 17_280_001))).toMatchObject(expected);
    // by shape: the error of another build of @tollgate/limiter (CommonJS) counts the same
    const foreign = Object.assign(new Error('over budget'), { code: 'BUDGET_EXCEEDED', group: 'batch', dimension: 'outputTokensPerDay', retryAfterMs: 17_280_001 });
    expect(describeFailure(foreign)).toMatchObject(expected);
  });

  it('an unreachable Redis is retried', () => {
    expect(describeFailure(new LimiterUnavailableError('l'))).toMatchObject({ retryable: true });
  });
});
