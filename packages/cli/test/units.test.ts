import { describe, expect, it } from 'vitest';
import { diffLimits, documentOf, durationSchema, formatDuration } from '../src/index.js';

describe('durations', () => {
  it('parses a number and a unit into whole ms, within 0..7d', () => {
    expect(durationSchema.parse('500ms')).toBe(500);
    expect(durationSchema.parse('30s')).toBe(30_000);
    expect(durationSchema.parse('1.5m')).toBe(90_000);
    expect(durationSchema.parse('2h')).toBe(7_200_000);
    expect(durationSchema.parse('7d')).toBe(604_800_000);
    for (const bad of ['30', 's', '-1s', '1 s', '8d', '1w', '']) expect(durationSchema.safeParse(bad).success, bad).toBe(false);
  });

  it('formats as h/m/s', () => {
    expect(formatDuration(90_000)).toBe('1m30s');
    expect(formatDuration(3_600_000)).toBe('1h');
    expect(formatDuration(250)).toBe('250ms');
  });
});

describe('diffLimits', () => {
  const fleet = { schema: 1 as const, concurrency: 8, rates: { requests: { limit: 1_000, intervalMs: 60_000, burst: null } }, reserve: [], leaseTtlMs: 15_000 };

  it('finds nothing when a rate is stated per second instead of per minute', () => {
    expect(diffLimits(fleet, documentOf({ rates: { requests: { limit: 1_000 / 60, intervalMs: 1_000, burst: 1_000 } }, concurrency: 8, reserve: [] }, fleet))).toEqual([]);
  });

  it('names every changed field, a dimension added or removed, the reserve', () => {
    const next = documentOf({ concurrency: 6, rates: { inputTokens: { limit: 400_000, intervalMs: 60_000 } }, reserve: [{ maxPriority: 1, concurrency: 2 }] }, fleet);
    expect(diffLimits(fleet, next)).toEqual([
      { field: 'concurrency', fleet: 8, file: 6 },
      { field: 'rates.requests.perMinute', fleet: 1_000, file: null },
      { field: 'rates.requests.capacity', fleet: 1_000, file: null },
      { field: 'rates.inputTokens.perMinute', fleet: null, file: 400_000 },
      { field: 'rates.inputTokens.capacity', fleet: null, file: 400_000 },
      { field: 'reserve', fleet: null, file: '1:2' },
    ]);
  });
});
