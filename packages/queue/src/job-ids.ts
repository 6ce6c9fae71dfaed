import { createHash, randomBytes } from 'node:crypto';

/**
 * Every job id this package makes: `job_` and 22 base64url characters (128 bits). Nothing a caller sends is ever a
 * job id or part of a Redis key: a random id for a plain enqueue, a hash of the tenant and the key for an idempotent
 * one. The prefix and the fixed length keep every id apart from BullMQ's own key suffixes (`wait`, `meta`, `marker`,
 * `id`, …) and from its incrementing numeric ids, and random ids reveal neither order nor count.
 */
export const JOB_ID_PATTERN = /^job_[A-Za-z0-9_-]{22}$/;
const JOB_ID_PREFIX = 'job_';
/** 128 bits: random ids never collide in practice, and a derived one cannot be found from another tenant's key. */
const JOB_ID_BYTES = 16;
/** Longest `Idempotency-Key` accepted, in characters (Stripe's bound is 255). */
export const IDEMPOTENCY_KEY_LENGTH_MAX = 256;
/** Versions the derivation: a change makes new ids, never a silent collision with old ones. */
const DERIVATION_TAG = 'tollgate-idempotency-v1';

/** A new random job id. */
export function randomJobId(): string {
  return JOB_ID_PREFIX + randomBytes(JOB_ID_BYTES).toString('base64url');
}

/**
 * The job id of an idempotent enqueue: one tenant's key always maps to the same id, another tenant's same key to a
 * different one. `\0` cannot occur in a tenant name, so (tenant, key) pairs cannot run into each other.
 */
export function idempotentJobId(tenant: string | null, key: string): string {
  const digest = createHash('sha256')
    .update(`${DERIVATION_TAG}\0${tenant ?? ''}\0`)
    .update(key, 'utf8')
    .digest();
  return JOB_ID_PREFIX + digest.subarray(0, JOB_ID_BYTES).toString('base64url');
}

/** True for an id of the shape this package makes; anything else is never looked up in Redis. */
export function isJobId(value: string): boolean {
  return JOB_ID_PATTERN.test(value);
}
