import { randomBytes } from 'node:crypto';

/** A name no other test uses, so tests sharing one Redis never share keys. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}
