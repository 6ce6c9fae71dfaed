/** The value at quantile `q` (0..1) by nearest rank; NaN for no values. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** Each figure's median over several measurements of one cell. */
export function medianOfEach<T extends Record<string, number>>(cells: readonly T[]): T {
  const first = cells[0];
  if (first === undefined) throw new RangeError('no measurements to take the median of');
  return Object.fromEntries(
    Object.keys(first).map((name) => [
      name,
      quantile(
        cells.map((cell) => cell[name] ?? Number.NaN),
        0.5,
      ),
    ]),
  ) as T;
}

/** Splits `total` into `parts` integers as evenly as possible, larger ones first: 10 over 4 → 3, 3, 2, 2. */
export function splitEvenly(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, index) => Math.floor(total / parts) + (index < total % parts ? 1 : 0));
}

/** Splits `total` in proportion to `weights` (largest remainder), so the parts add up to `total`. */
export function splitByWeight(total: number, weights: readonly number[]): number[] {
  const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
  const exact = weights.map((weight) => (total * weight) / weightSum);
  const parts = exact.map(Math.floor);
  let left = total - parts.reduce((sum, part) => sum + part, 0);
  const byRemainder = exact.map((value, index) => ({ index, remainder: value - Math.floor(value) })).sort((a, b) => b.remainder - a.remainder);
  for (const { index } of byRemainder) {
    if (left === 0) break;
    parts[index] = (parts[index] ?? 0) + 1;
    left -= 1;
  }
  return parts;
}

export { seededRandom } from '@tollgate/test-support'; // one PRNG for the bench and the test upstreams
