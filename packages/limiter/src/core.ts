import type { EventEmitter } from 'node:events';
import type { FleetView } from './fleet.js';
import type { ResolvedLimiterOptions } from './options.js';
import type { LateReply, ScriptRunner } from './runner.js';
import type { Pumped } from './scripts/scripts.js';
import type { LimiterEvents } from './types.js';

/** What the parts of a limiter (lease keeper, waiters, grant reader) share: the façade gives it to each. */
export interface LimiterCore {
  readonly name: string;
  readonly ownerId: string;
  readonly options: ResolvedLimiterOptions;
  readonly runner: ScriptRunner;
  /** The fleet's limits this process runs with. */
  readonly fleet: FleetView;
  readonly events: EventEmitter<LimiterEvents>;
  readonly closed: boolean;
  /** Reports an error nobody awaits (a background call) as a `redisError` event. */
  redisError(error: unknown): void;
  /** Every reply that pumped: resolve this process's own grants in it, and keep the pump timer at its wake time. */
  afterPump(pumped: Pumped): void;
  /**
   * For every call that pumps: a reply that comes after the deadline is handled like one in time (its
   * grants are delivered), and one that never comes makes the waiters check whether they were granted in it.
   */
  readonly latePumped: LateReply<{ pumped: Pumped }>;
}
