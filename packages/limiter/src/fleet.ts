import type { EventEmitter } from 'node:events';
import {
  canonicalLimits,
  limitsBuckets,
  limitsDifferences,
  limitsFromOptions,
  limitsGroupBuckets,
  parseFleetLimits,
  type FleetLimits,
  type FleetLimitsState,
  type GroupBucketSpec,
} from './limits.js';
import { heartbeatMsFor, type BucketSpec, type ResolvedLimiterOptions } from './options.js';
import type { LimiterEvents } from './types.js';

/**
 * What this process knows of the fleet's limits (DESIGN §8): its own (from its options), the fleet's
 * in force (from Redis, after ready()), and what follows from them: the buckets costs are checked
 * against, the lease TTL Redis enforces and the heartbeat period timed by it, and the highest fence
 * seen (a dataset re-created after data loss continues above it).
 */
export class FleetView {
  /** This process's own limits: written only on first boot, after data loss, or by an explicit apply. */
  readonly own: FleetLimits;
  readonly #name: string;
  readonly #options: ResolvedLimiterOptions;
  readonly #events: EventEmitter<LimiterEvents>;
  #state: FleetLimitsState | undefined;
  #buckets: ReadonlyMap<string, BucketSpec>;
  /** The groups' budgets by dimension in Redis (`~<group>/<bucket>`), and each group's list. */
  #budgets: ReadonlyMap<string, GroupBucketSpec>;
  #groupBudgets: ReadonlyMap<string, readonly GroupBucketSpec[]>;
  #heartbeatMs: number;
  #highestFence = 0;
  /** Called when the heartbeat period changed (the fleet's leaseTtlMs did). */
  onHeartbeatChange: (() => void) | undefined;

  constructor(name: string, options: ResolvedLimiterOptions, events: EventEmitter<LimiterEvents>) {
    this.#name = name;
    this.#options = options;
    this.#events = events;
    this.own = limitsFromOptions(options);
    this.#buckets = bucketMap(this.own);
    [this.#budgets, this.#groupBudgets] = budgetMaps(this.own);
    this.#heartbeatMs = options.heartbeatMs;
  }

  /** The fleet's limits in force; undefined before the first configure. */
  get state(): FleetLimitsState | undefined {
    return this.#state;
  }

  /** The limits a configure writes when Redis has none: the fleet's as last known (data loss), else this process's own. */
  get known(): FleetLimits {
    return this.#state?.limits ?? this.own;
  }

  get buckets(): ReadonlyMap<string, BucketSpec> {
    return this.#buckets;
  }

  /** The groups' weights in force (fair share, DESIGN §9); undefined: waiters in arrival order. */
  get groups(): Readonly<Record<string, { weight: number }>> | undefined {
    return this.known.groups;
  }

  /** The budgets of `group` in force (none for a group without, or a limiter without groups). */
  groupBudgets(group: string): readonly GroupBucketSpec[] {
    return this.#groupBudgets.get(group) ?? NO_BUDGETS;
  }

  /** A budget in force by its dimension in Redis (`~<group>/<bucket>`); undefined when the limits no longer have it. */
  budget(dimension: string): GroupBucketSpec | undefined {
    return this.#budgets.get(dimension);
  }

  /** The pools in force (the fleet's once known, else this process's own); undefined: no pools. */
  get pools(): readonly string[] | undefined {
    return this.known.pools;
  }

  /** The lease TTL Redis enforces. */
  get leaseTtlMs(): number {
    return this.#state?.limits.leaseTtlMs ?? this.own.leaseTtlMs;
  }

  get heartbeatMs(): number {
    return this.#heartbeatMs;
  }

  /** The revision this process runs with ('' before the first configure). */
  get version(): string {
    return this.#state?.version ?? '';
  }

  get highestFence(): number {
    return this.#highestFence;
  }

  sawFence(fence: number): void {
    if (fence > this.#highestFence) this.#highestFence = fence;
  }

  /**
   * Runs with the fleet's limits from now on. The first time, warns once (a process warning and a
   * `limitsDiffer` event) when they differ from this process's own; later, emits `limitsChanged`.
   */
  adopt(version: string, json: string, hash?: string): void {
    const limits = parseFleetLimits(json, this.#name);
    const limitsHash = hash ?? canonicalLimits(limits).hash;
    const previous = this.#state;
    if (previous?.version === version && previous.hash === limitsHash) return;
    this.#state = { limits, version, hash: limitsHash };
    this.#buckets = bucketMap(limits);
    [this.#budgets, this.#groupBudgets] = budgetMaps(limits);
    const heartbeatMs = heartbeatMsFor(this.#options, limits.leaseTtlMs);
    if (heartbeatMs !== this.#heartbeatMs) {
      this.#heartbeatMs = heartbeatMs;
      this.onHeartbeatChange?.();
    }
    if (previous === undefined) {
      const differences = limitsDifferences(this.own, limits);
      if (differences.length === 0) return;
      process.emitWarning(`limiter ${this.#name} runs with the fleet's limits (revision ${version}), not its own options: ${differences.join('; ')}`, {
        code: 'TOLLGATE_LIMITS_DIFFER',
      });
      if (this.#events.listenerCount('limitsDiffer') > 0) this.#events.emit('limitsDiffer', { differences, version });
    } else if (previous.hash !== limitsHash && this.#events.listenerCount('limitsChanged') > 0) {
      this.#events.emit('limitsChanged', { limits, version });
    }
  }
}

function bucketMap(limits: FleetLimits): ReadonlyMap<string, BucketSpec> {
  return new Map(limitsBuckets(limits).map((spec) => [spec.dimension, spec]));
}

const NO_BUDGETS: readonly GroupBucketSpec[] = Object.freeze([]);

function budgetMaps(limits: FleetLimits): [ReadonlyMap<string, GroupBucketSpec>, ReadonlyMap<string, readonly GroupBucketSpec[]>] {
  const specs = limitsGroupBuckets(limits);
  const byGroup = new Map<string, GroupBucketSpec[]>();
  for (const spec of specs) byGroup.set(spec.group, [...(byGroup.get(spec.group) ?? []), spec]);
  return [new Map(specs.map((spec) => [spec.dimension, spec])), byGroup];
}
