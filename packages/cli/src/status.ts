import type { LimitsDocument } from '@tollgate/config';
import type { BucketSnapshot, Limiter } from '@tollgate/limiter';
import { QUEUE_NAME_PATTERN, TENANT_PATTERN, accountQueueName, knownAccountQueueNames, queuedPools } from '@tollgate/queue';
import {
  ALL_POOLS,
  accountPool,
  fleetStatsKey,
  mergeTenantCounts,
  poolViews,
  queueKeys,
  readFleetStats,
  readTenantCounts,
  withDeadline,
  type FleetStats,
  type TenantCount,
} from '@tollgate/queue/internal';
import type { Queue } from 'bullmq';
import { formatDuration } from './duration.js';
import { shown } from './errors.js';
import { openLimiter, openQueue, openQueues, storedDocument, type Context } from './fleet.js';

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

/** One account of the fleet's limits document: its queue, with its pools' and tenants' queues, and its jobs per tenant. */
export interface AccountStatus {
  account: string;
  /**
   * The account's queue, `<queue>@<account>`; the queues of its pools (`<queue>@<account>~<pool>`) and of its tenants
   * (`<queue>@<account>[~<pool>]#<tenant>`) are counted with it.
   */
  queue: string;
  /** The pools with queues of their own (an account with several pools); none: one queue for the account. */
  queuedPools: string[];
  counts: JobCounts;
  /** The account's fleet-wide counters (completed, failed, rate_limited:<kind>, upstream:<status>). */
  totals: FleetStats;
  /** As its limiter's (`*`: all the pools of an account with pools). */
  pool: string;
  /** Busiest first; tenants with nothing unfinished left out. */
  tenants: TenantCount[];
}

export interface FleetStatus {
  /** Redis time of the first snapshot. */
  atMs: number;
  limiters: LimiterStatus[];
  queue: { name: string; counts: JobCounts; totals: FleetStats };
  /** Every account of the fleet's limits document that `status` shows (none without a document), each with its own queue. */
  accounts: AccountStatus[];
  /**
   * The queue's jobs per tenant (busiest first; tenants with nothing unfinished left out), for the account that runs
   * the queue (the first `--name`); `pool` as that limiter's (`*`: all the pools of an account with pools).
   */
  tenants: { account: string; pool: string; rows: TenantCount[] };
  /** What is left of each tenant's budgets in the account of `tenants` (its group's buckets in that account's limiter), by tenant and budget; `{}` without budgets. */
  budgets: Record<string, Record<string, BucketSnapshot>>;
}

export async function jobCounts(context: Context, queue: Queue): Promise<JobCounts> {
  const counts = await withDeadline(queue.getJobCounts(...JOB_STATES), context.timeoutMs, 'job counts');
  return Object.fromEntries(JOB_STATES.map((state) => [state, counts[state] ?? 0])) as JobCounts;
}

/**
 * The limiters `status` shows: `--name`'s; without it and with a fleet document, every account of the document
 * (TOLLGATE_NAME's first when it is one of them); else TOLLGATE_NAME's. The accounts whose queues it shows: those of
 * the document among them.
 */
async function shownAccounts(context: Context): Promise<{ names: string[]; accounts: string[]; document: LimitsDocument | undefined }> {
  const document = (await storedDocument(context))?.document;
  if (document === undefined) return { names: context.names, accounts: [], document };
  const all = Object.keys(document.accounts);
  const names = context.namesGiven ? context.names : [...new Set([...context.names.filter((name) => all.includes(name)), ...all])];
  return { names, accounts: all.filter((account) => names.includes(account)), document };
}

/** Sums the job counts of several queues. */
export function addCounts(all: readonly JobCounts[]): JobCounts {
  return Object.fromEntries(JOB_STATES.map((state) => [state, all.reduce((total, counts) => total + counts[state], 0)])) as JobCounts;
}

/** Opens what `status` reads once, then reads it as often as asked (`--watch`). */
export async function statusReader(context: Context): Promise<() => Promise<FleetStatus>> {
  const { names, accounts: documentAccounts, document } = await shownAccounts(context);
  const limiters: Limiter[] = [];
  for (const name of names) limiters.push((await openLimiter(context, name)).limiter);
  // with a fleet document the accounts' queues are the ones that matter: the plain queue may never have had a job
  // with its pool queues (on a fleet whose only account has several pools, the plain queue's jobs of a pool are there)
  const queues = await openQueues(context, context.queue, { mayBeEmpty: document !== undefined });
  const keys = queueKeys(context.queue);
  // the account of the queue shown first: --account's (or --tenant's), else the first limiter's
  const statsKey =
    context.account !== undefined
      ? fleetStatsKey(context.baseQueue, context.account)
      : QUEUE_NAME_PATTERN.test(context.baseQueue)
        ? fleetStatsKey(context.baseQueue, names[0] ?? '')
        : keys.fleetStats;
  // each account of the document: its own queue, its pools' and its tenants' queues (a queue with no job yet is
  // empty); none when --queue names an account's queue already (its name is no base for the others)
  const accounts = await Promise.all(
    (QUEUE_NAME_PATTERN.test(context.baseQueue) ? documentAccounts : []).map(async (account) => {
      const own = accountQueueName(context.baseQueue, account);
      const names = await withDeadline(knownAccountQueueNames(context.redis, document, context.baseQueue, account), context.timeoutMs, 'pool queues');
      const lanes = await Promise.all(names.map(async (name) => ({ name, queue: await openQueue(context, name, { mayBeEmpty: true }) })));
      return { account, own, lanes, statsKey: fleetStatsKey(context.baseQueue, account) };
    }),
  );
  const readAccount = async (account: (typeof accounts)[number], pool: string): Promise<AccountStatus> => {
    const [counts, totals, tenants] = await Promise.all([
      Promise.all(account.lanes.map((lane) => jobCounts(context, lane.queue))),
      withDeadline(readFleetStats(context.redis, account.statsKey), context.timeoutMs, 'fleet stats'),
      Promise.all(account.lanes.map((lane) => withDeadline(readTenantCounts(context.redis, queueKeys(lane.name)), context.timeoutMs, 'tenant counts'))),
    ]);
    const pools = queuedPools(document, account.account);
    return { account: account.account, queue: account.own, queuedPools: pools, counts: addCounts(counts), totals, pool, tenants: mergeTenantCounts(tenants) };
  };
  return async () => {
    const [snapshots, counts, totals, tenants] = await Promise.all([
      Promise.all(limiters.map((limiter) => limiter.snapshot())),
      Promise.all(queues.map(({ queue }) => jobCounts(context, queue))).then(addCounts),
      withDeadline(readFleetStats(context.redis, statsKey), context.timeoutMs, 'fleet stats'),
      Promise.all(queues.map(({ name }) => withDeadline(readTenantCounts(context.redis, queueKeys(name)), context.timeoutMs, 'tenant counts'))).then(mergeTenantCounts),
    ]);
    const poolOf = (account: string) => accountPool(snapshots[names.indexOf(account)] ?? { pools: {} });
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
      accounts: await Promise.all(accounts.map((account) => readAccount(account, poolOf(account.account)))),
      tenants: { account: context.account ?? names[0] ?? '', pool: poolOf(context.account ?? names[0] ?? ''), rows: tenants },
      budgets: snapshots[names.indexOf(context.account ?? names[0] ?? '')]?.budgets ?? {},
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
  lines.push(`queue ${status.queue.name}`, ...renderCounts(status.queue.counts, status.queue.totals));
  lines.push('', ...renderTenants(status.tenants));
  for (const account of status.accounts) {
    const pools = account.queuedPools.length === 0 ? '' : `its pools' (${account.queuedPools.join(', ')}) and `;
    lines.push('', `account ${account.account} (queue ${account.queue}, with ${pools}its tenants' queues)`, ...renderCounts(account.counts, account.totals));
    lines.push(...renderTenants({ account: account.account, pool: account.pool, rows: account.tenants }).map((line) => `  ${line}`));
  }
  if (Object.keys(status.budgets).length > 0) lines.push('', ...renderBudgets(status.tenants.account, status.budgets));
  return lines.join('\n');
}

/** A queue's jobs by state and its account's upstream 429s. */
function renderCounts(counts: JobCounts, totals: FleetStats): string[] {
  const rateLimited = Object.entries(totals).filter(([field]) => field.startsWith('rate_limited:'));
  return [
    `  waiting      ${counts.waiting + counts.prioritized} (prioritized ${counts.prioritized}), delayed ${counts.delayed}`,
    `  active       ${counts.active}`,
    `  finished     completed ${counts.completed}, failed ${counts.failed}`,
    `  upstream 429s ${rateLimited.length === 0 ? 'none' : rateLimited.map(([field, count]) => `${field.slice('rate_limited:'.length)} ${count}`).join(', ')}`,
  ];
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
function renderBudgets(account: string, budgets: FleetStatus['budgets']): string[] {
  const rows = Object.entries(budgets).flatMap(([tenant, buckets]) =>
    Object.entries(buckets).map(([budget, bucket]) => [TENANT_PATTERN.test(tenant) ? tenant : shown(tenant), budget, bucket] as const),
  );
  const width = Math.max('tenant'.length, ...rows.map(([tenant]) => tenant.length));
  const budgetWidth = Math.max(...rows.map(([, budget]) => budget.length));
  return [
    `tenant budgets (account ${account}; left / budget)`,
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
