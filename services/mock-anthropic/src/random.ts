import { randomBytes } from 'node:crypto';
import { DELAY_MS_MAX, type Delay } from './options.js';

const FNV_OFFSET_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;
const UINT32_RANGE = 2 ** 32;
const BASE58_ALPHABET = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';
/** Request and message ids carry 24 base58 characters after their prefix, like the real ones. */
export const ID_LENGTH_CHARS = 24;

/** 32-bit FNV-1a of `text`, continuing from `seed`: cheap and stable across runs. */
export function hashString(text: string, seed: number = FNV_OFFSET_BASIS): number {
  let hash = seed >>> 0;
  for (let i = 0; i < text.length; i += 1) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, FNV_PRIME) >>> 0;
  }
  return hash;
}

/** A seeded generator of floats in [0, 1) (mulberry32). */
export type Rng = () => number;

export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / UINT32_RANGE;
  };
}

/** A standard normal draw (Box–Muller). */
function normal(rng: Rng): number {
  const u = 1 - rng(); // (0, 1]: log(0) is -Infinity
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * rng());
}

/** Draws one delay in milliseconds; fixed delays use no randomness. */
export function sampleDelayMs(delay: Delay, rng: Rng): number {
  if (typeof delay === 'number') return delay;
  switch (delay.kind) {
    case 'fixed':
      return delay.ms;
    case 'uniform':
      return delay.minMs + (delay.maxMs - delay.minMs) * rng();
    case 'lognormal':
      return Math.min(delay.maxMs, DELAY_MS_MAX, delay.medianMs * Math.exp(delay.sigma * normal(rng)));
  }
}

/** `<prefix><24 base58 chars>`, e.g. `req_011CSHhr…`. Random, not seeded: ids need only be unique. */
export function randomId(prefix: string): string {
  const bytes = randomBytes(ID_LENGTH_CHARS);
  let id = prefix;
  for (const byte of bytes) id += BASE58_ALPHABET[byte % BASE58_ALPHABET.length];
  return id;
}
