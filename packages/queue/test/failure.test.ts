import { CostExceedsCapacityError, InvalidArgumentError, LimiterUnavailableError } from '@tollgate/limiter';
import { describe, expect, it } from 'vitest';
import { describeFailure } from '../src/failure.js';

describe('describeFailure: limiter errors', () => {
  it('a bad argument (InvalidArgumentError) fails the job at once with a 400, like a cost that can never fit', () => {
    for (const error of [new InvalidArgumentError('priority', 12, 'an integer from 0 to 9'), new CostExceedsCapacityError('l', 'inputTokens', 10, 5)]) {
      expect(describeFailure(error)).toMatchObject({ status: 400, retryable: false });
    }
  });

  it('an unreachable Redis is retried', () => {
    expect(describeFailure(new LimiterUnavailableError('l'))).toMatchObject({ retryable: true });
  });
});
