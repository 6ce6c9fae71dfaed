/** Markdown cells: every figure keeps its unit in the column header, so cells are bare numbers. */
export const NOT_APPLICABLE = '—';

export function percent(value: number): string {
  return Number.isFinite(value) ? `${(value * 100).toFixed(1)}%` : NOT_APPLICABLE;
}

export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : NOT_APPLICABLE;
}

export function signed(value: number, digits: number): string {
  if (!Number.isFinite(value)) return NOT_APPLICABLE;
  return `${value >= 0 ? '+' : ''}${value.toFixed(digits)}`;
}

export function whole(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : NOT_APPLICABLE;
}

export function markdownTable(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}

/** How far a maximum went over its limit: `0`, or `+n`. */
export function violations(max: number, limit: number): string {
  return max > limit ? `+${max - limit}` : '0';
}

/** An error as one table-friendly line. */
export function firstLine(error: unknown): string {
  return error instanceof Error ? (error.message.split('\n')[0] ?? error.message) : String(error);
}
