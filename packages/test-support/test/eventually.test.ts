import { describe, expect, it } from 'vitest';
import { eventually } from '../src/index.js';

describe('eventually', () => {
  it('resolves true as soon as the check holds', async () => {
    let calls = 0;
    expect(await eventually(async () => ++calls >= 3, 5_000, 1)).toBe(true);
    expect(calls).toBe(3);
  });

  it('resolves false when the check never holds, after one last check at the deadline', async () => {
    let calls = 0;
    expect(
      await eventually(
        async () => {
          calls++;
          return false;
        },
        30,
        5,
      ),
    ).toBe(false);
    expect(calls).toBeGreaterThanOrEqual(2);
  });
});
