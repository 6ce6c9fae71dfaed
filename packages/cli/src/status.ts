import type { BucketSnapshot, Limiter } from '@tollgate/limiter';
import { TENANT_PATTERN } from '@tollgate/queue';
import { ALL_POOLS, accountPool, poolViews, queueKeys, readFleetStats, readTenantCounts, withDeadline, type FleetStats, type TenantCount } from '@tollgate/queue/internal';
import type { Queue } from 'bullmq';
import { formatDuration } from './duration.js';
import { shown } from './errors.js';
import { openLimiter, openQueue, type Context } from './fleet.js';

/** BullMQ job states shown by `status` and `queue counts`. */
export const JOB_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed', 'waiting-children'] as const;
export type JobCounts = Record<(typeof JOB_STATES)[number], number>;

/** One pool of a limiter (DESIGN §9): its waiters, the pause that holds it and its buckets by dimension. */
export interface PoolStatus {
  pool: string;
  waiting: number;
  /** What is left of the pause that holds the pool (its own or the account's, whichever ends later); 0 when not paused. */
  pausedForMs: number;
  /** By dimension (`inputTokens`, not `sonnet/inputTokens`). */
  buckets: Record<string, BucketSnapshot>;
}

export interface LimiterStatus {
  name: string;
  /** `default` for a limiter without pools; `*` (all its pools) for one with pools, whose pools are in `pools`. */
  pool: string;
  inFlight: number;
  /** The effective limit (adaptive concurrency may hold it below the configured one); null: no concurrency limit. */
  concurrency: number | null;
  concurrencyConfigured: number | null;
  /** All pools together. */
  waiting: number;
  /** The account's pause (every pool); 0 when not paused. */
  pausedForMs: number;
  /** Every bucket, as the limiter names them (`<pool>/<dimension>` with pools). */
  buckets: Record<string, BucketSnapshot>;
  /** One entry per pool, in lane order; without pools, the one pool `default`. */
  pools: PoolStatus[];
}

export interface FleetStatus {
  /** Redis time of the first snapshot. */
  atMs: number;
  limiters: LimiterStatus[];
  queue: { name: string; counts: JobCounts; totals: FleetStats };
  /**
   * The queue's jobs per tenant (busiest first; tenants with nothing unfinished left out), for the account that runs
   * the queue (the first `--name`); `pool` as that limiter's (`*`: all the pools of an account with pools).
   */
  tenants: { account: string; pool: string; rows: TenantCount[] };
  /** What is left of each tenant's budgets (its group's buckets in that account's limiter), by tenant and budget; `{}` without budgets. */
  budgets: Record<string, Record<string, BucketSnapshot>>;
}

export async function jobCounts(context: Context, queue: Queue): Promise<JobCounts> {
  const counts = await withDeadline(queue.getJobCounts(...JOB_STATES), context.timeoutMs, 'job counts');
  return Object.fromEntries(JOB_STATES.map((state) => [state, counts[state] ?? 0])) as JobCounts;
}

/** Opens what `status` reads once, then reads it as often as asked (`--watch`). */
export async function statusReader(context: Context): Promise<() => Promise<FleetStatus>> {
  const limiters: Limiter[] = [];
  for (const name of context.names) limiters.push((await openLimiter(context, name)).limiter);
  const queue = await openQueue(context);
  const keys = queueKeys(context.queue);
  return async () => {
    const [snapshots, counts, totals, tenants] = await Promise.all([
      Promise.all(limiters.map((limiter) => limiter.snapshot())),
      jobCounts(context, queue),
      withDeadline(readFleetStats(context.redis, keys.fleetStats), context.timeoutMs, 'fleet stats'),
      withDeadline(readTenantCounts(context.redis, keys), context.timeoutMs, 'tenant counts'),
    ]);
    return {
      atMs: snapshots[0]?.nowMs ?? Date.now(),
      limiters: snapshots.map((snapshot, i) => ({
        name: limiters[i]?.name ?? '',
        pool: accountPool(snapshot),
        inFlight: snapshot.inFlight,
        concurrency: snapshot.concurrency,
        concurrencyConfigured: snapshot.concurrencyConfigured,
        waiting: snapshot.waiting,
        pausedForMs: Math.max(0, snapshot.pausedUntilMs - snapshot.nowMs),
        buckets: snapshot.buckets,
        pools: poolViews(snapshot).map(({ pool, waiting, pausedUntilMs, buckets }) => ({ pool, waiting, pausedForMs: Math.max(0, pausedUntilMs - snapshot.nowMs), buckets })),
      })),
      queue: { name: context.queue, counts, totals },
      tenants: { account: context.names[0] ?? '', pool: accountPool(snapshots[0] ?? { pools: {} }), rows: tenants },
      budgets: snapshots[0]?.budgets ?? {},
    };
  };
}

const number = (value: number) => (Number.isInteger(value) ? String(value) : value.toFixed(1));

/** The one-screen view. */
export function renderStatus(status: FleetStatus): string {
  const lines = [`tollgate status at ${new Date(status.atMs).toISOString()} (Redis time)`, ''];
  for (const limiter of status.limiters) {
    const pooled = limiter.pool === ALL_POOLS;
    lines.push(pooled ? `limiter ${limiter.name} (pools ${limiter.pools.map(({ pool }) => pool).join(', ')})` : `limiter ${limiter.name} (pool ${limiter.pool})`);
    if (limiter.concurrency === null) lines.push(`  in flight    ${limiter.inFlight} (no concurrency limit)`);
    else {
      const adaptive =
        limiter.concurrency < (limiter.concurrencyConfigured ?? limiter.concurrency) ? `, adaptive concurrency holds it below the configured ${limiter.concurrencyConfigured}` : '';
      lines.push(`  in flight    ${limiter.inFlight} / ${limiter.concurrency}${adaptive}`);
    }
    lines.push(`  waiting      ${limiter.waiting}`);
    lines.push(`  paused       ${paused(limiter.pausedForMs)}`);
    if (!pooled) lines.push(...renderBuckets(limiter.buckets, '  '));
    else {
      for (const pool of limiter.pools) {
        lines.push(`  pool ${pool.pool}`);
        lines.push(`    waiting    ${pool.waiting}`);
        lines.push(`    paused     ${paused(pool.pausedForMs)}`);
        lines.push(...renderBuckets(pool.buckets, '    '));
      }
    }
    lines.push('');
  }
  const { counts, totals } = status.queue;
  lines.push(`queue ${status.queue.name}`);
  lines.push(`  waiting      ${counts.waiting + counts.prioritized} (prioritized ${counts.prioritized}), delayed ${counts.delayed}`);
  lines.push(`  active       ${counts.active}`);
  lines.push(`  finished     completed ${counts.completed}, failed ${counts.failed}`);
  const rateLimited = Object.entries(totals).filter(([field]) => field.startsWith('rate_limited:'));
  lines.push(`  upstream 429s ${rateLimited.length === 0 ? 'none' : rateLimited.map(([field, count]) => `${field.slice('rate_limited:'.length)} ${count}`).join(', ')}`);
  lines.push('', ...renderTenants(status.tenants));
  if (Object.keys(status.budgets).length > 0) lines.push('', ...renderBudgets(status.budgets));
  return lines.join('\n');
}

const paused = (ms: number) => (ms > 0 ? `yes, ${formatDuration(ms)} left` : 'no');

/** One line per bucket, `indent` before the label (the columns line up with the lines above it). */
function renderBuckets(buckets: Record<string, BucketSnapshot>, indent: string): string[] {
  const entries = Object.entries(buckets);
  const width = Math.max(0, ...entries.map(([dimension]) => dimension.length));
  const label = 'buckets'.padEnd(15 - indent.length);
  return entries.map(([dimension, bucket], i) => {
    const level = `${number(bucket.tokens)} / ${number(bucket.capacity)}`;
    return `${indent}${i === 0 ? label : ' '.repeat(label.length)}${dimension.padEnd(width)}  ${level.padEnd(20)} refills ${number(bucket.refillPerSecond * 60)}/min`;
  });
}

/** The per-tenant table: one row per tenant with unfinished jobs. */
function renderTenants(tenants: FleetStatus['tenants']): string[] {
  const lines = [`per tenant (account ${tenants.account}, pool ${tenants.pool})`];
  if (tenants.rows.length === 0) return [...lines, '  no unfinished jobs'];
  // a name read from Redis that is not a tenant name (no tollgate process writes one) is shown quoted, never raw
  const names = tenants.rows.map((row) => (TENANT_PATTERN.test(row.tenant) ? row.tenant : shown(row.tenant)));
  const width = Math.max('tenant'.length, ...names.map((name) => name.length));
  lines.push(`  ${'tenant'.padEnd(width)}  ${'in flight'.padStart(9)}  ${'waiting'.padStart(9)}`);
  tenants.rows.forEach((row, i) => lines.push(`  ${(names[i] ?? '').padEnd(width)}  ${String(row.inFlight).padStart(9)}  ${String(row.waiting).padStart(9)}`));
  return lines;
}

/** Each tenant's budgets: what is left of each (negative: a debt), its capacity, and its refill per day. */
function renderBudgets(budgets: FleetStatus['budgets']): string[] {
  const rows = Object.entries(budgets).flatMap(([tenant, buckets]) =>
    Object.entries(buckets).map(([budget, bucket]) => [TENANT_PATTERN.test(tenant) ? tenant : shown(tenant), budget, bucket] as const),
  );
  const width = Math.max('tenant'.length, ...rows.map(([tenant]) => tenant.length));
  const budgetWidth = Math.max(...rows.map(([, budget]) => budget.length));
  return [
    'tenant budgets (left / budget)',
    ...rows.map(
      ([tenant, budget, bucket]) =>
        `  ${tenant.padEnd(width)}  ${budget.padEnd(budgetWidth)}  ${`${number(bucket.tokens)} / ${number(bucket.capacity)}`.padEnd(20)} refills ${number(Number((bucket.refillPerSecond * SECONDS_PER_DAY).toPrecision(12)))}/day`,
    ),
  ];
}
const SECONDS_PER_DAY = 24 * 60 * 60;

/** `status`: prints once, or with `--watch` every `intervalMs` until interrupted (one JSON line per refresh with `--json`). */
export async function statusCommand(context: Context, options: { watch: boolean; intervalMs: number }): Promise<void> {
  const read = await statusReader(context);
  const show = (status: FleetStatus) => context.print(context.json ? JSON.stringify(status) : renderStatus(status));
  if (!options.watch) {
    show(await read());
    return;
  }
  const clear = !context.json && process.stdout.isTTY ? '\u001b[2J\u001b[H' : '';
  while (!context.signal.aborted) {
    const status = await read();
    if (clear !== '') process.stdout.write(clear);
    show(status);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, options.intervalMs);
      context.signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
    });
  }
}
