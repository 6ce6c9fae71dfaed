import { z } from 'zod';

/** The longest pause or age the CLI accepts: a week. */
export const DURATION_MS_MAX = 7 * 24 * 60 * 60 * 1000;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_PATTERN = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** A duration like `500ms`, `30s`, `2m`, `1.5h`, `7d`, in whole milliseconds, 0 to {@link DURATION_MS_MAX}. */
export const durationSchema = z
  .string()
  .regex(DURATION_PATTERN, 'expected a number and a unit: ms, s, m, h or d (e.g. 30s, 2m)')
  .transform((text) => {
    const [, amount = '0', unit = 'ms'] = DURATION_PATTERN.exec(text) ?? [];
    return Math.round(Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS]);
  })
  .pipe(z.number().int().min(0).max(DURATION_MS_MAX, 'at most 7d'));

/** `90000` → `1m30s`: how the CLI shows a duration. */
export function formatDuration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)}ms`;
  const seconds = Math.round(ms / 1_000);
  const parts = [
    [Math.floor(seconds / 3_600), 'h'],
    [Math.floor((seconds % 3_600) / 60), 'm'],
    [seconds % 60, 's'],
  ] as const;
  return (
    parts
      .filter(([amount]) => amount > 0)
      .map(([amount, unit]) => `${amount}${unit}`)
      .join('') || '0s'
  );
}
