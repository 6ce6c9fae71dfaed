import type Anthropic from '@anthropic-ai/sdk';
import { isJobId } from '@tollgate/queue';
import { decodeFailure, decodeResult, parseJobData, queueKeys, sweepAllTenantJobs, trackRetriedTenantJobs, withDeadline, type ParsedJob } from '@tollgate/queue/internal';
import { Job } from 'bullmq';
import { formatDuration } from './duration.js';
import { CliError, EXIT, shown } from './errors.js';
import { openQueues, type Context } from './fleet.js';
import { JOB_STATES, addCounts, jobCounts } from './status.js';

/** Finished states `queue clean` removes from by default. */
export const CLEANABLE_STATES = ['completed', 'failed'] as const;
/** Jobs BullMQ moves back per call of `retryJobs`. */
const RETRY_BATCH = 1_000;

/**
 * The queue commands act on the command's queue and its pool queues together (`openQueues`: on an account with several
 * pools, `--account main` stands for `<queue>@main` and each `<queue>@main~<pool>`); `--pool` or a pool queue's
 * `--queue` picks one. Their JSON names the queues in `queues`.
 */
export async function queueCountsCommand(context: Context): Promise<void> {
  const queues = await openQueues(context);
  const counts = addCounts(await Promise.all(queues.map(({ queue }) => jobCounts(context, queue))));
  context.print(
    context.json
      ? JSON.stringify({ queue: context.queue, queues: queues.map(({ name }) => name), counts })
      : JOB_STATES.map((state) => `${state.padEnd(17)} ${counts[state]}`).join('\n'),
  );
}

/** `queue retry-failed`: every failed job back to waiting, attempts reset. */
export async function retryFailedCommand(context: Context): Promise<void> {
  const queues = await openQueues(context);
  let [retried, failed] = [0, 0];
  for (const { name, queue } of queues) {
    const before = await withDeadline(queue.getFailedCount(), context.timeoutMs, 'failed count');
    const failedIds = await withDeadline(queue.getRanges(['failed'], 0, -1), context.timeoutMs * 10, 'failed ids'); // at most the failed retention
    await withDeadline(queue.retryJobs({ state: 'failed', count: RETRY_BATCH }), context.timeoutMs * 10, 'retry');
    // the per-tenant view counts them as waiting now, not only once a worker starts them
    await withDeadline(trackRetriedTenantJobs(context.redis, queueKeys(name), failedIds), context.timeoutMs * 10, 'retry');
    const after = await withDeadline(queue.getFailedCount(), context.timeoutMs, 'failed count');
    retried += Math.max(0, before - after);
    failed += after;
  }
  context.print(
    context.json
      ? JSON.stringify({ queue: context.queue, queues: queues.map(({ name }) => name), retried, failed })
      : `${context.queue}: ${retried} failed job(s) back in the queue`,
  );
}

/** `queue clean --older-than D`: removes finished jobs (and their payloads) older than D, by state. */
export async function cleanCommand(context: Context, olderThanMs: number, states: readonly string[]): Promise<void> {
  const queues = await openQueues(context);
  const removed: Record<string, number> = {};
  for (const state of states) {
    removed[state] = 0;
    for (const { queue } of queues) {
      // limit 0: no limit (BullMQ cleans in batches of 10,000)
      const ids = await withDeadline(queue.clean(olderThanMs, 0, state as (typeof CLEANABLE_STATES)[number]), context.timeoutMs * 10, 'clean');
      removed[state] += ids.length;
    }
  }
  context.print(
    context.json
      ? JSON.stringify({ queue: context.queue, queues: queues.map(({ name }) => name), olderThanMs, removed })
      : `${context.queue}: removed ${Object.entries(removed)
          .map(([state, count]) => `${count} ${state}`)
          .join(', ')} job(s) older than ${formatDuration(olderThanMs)}`,
  );
}

/** `queue drain --yes`: removes every waiting job for good (running ones finish); `--delayed` too. */
export async function drainCommand(context: Context, options: { yes: boolean; delayed: boolean }): Promise<void> {
  const queues = await openQueues(context);
  const countAll = async () => addCounts(await Promise.all(queues.map(({ queue }) => jobCounts(context, queue))));
  const before = await countAll();
  const pending = before.waiting + before.prioritized + (options.delayed ? before.delayed : 0);
  if (!options.yes) throw new CliError(EXIT.usage, `drain removes ${pending} waiting job(s) of queue ${shown(context.queue)} for good; add --yes to do it`);
  for (const { name, queue } of queues) {
    await withDeadline(queue.drain(options.delayed), context.timeoutMs * 10, 'drain');
    await withDeadline(sweepAllTenantJobs(context.redis, queueKeys(name)), context.timeoutMs * 10, 'drain'); // the per-tenant view forgets them now
  }
  const after = await countAll();
  const removed = pending - (after.waiting + after.prioritized + (options.delayed ? after.delayed : 0));
  context.print(
    context.json
      ? JSON.stringify({ queue: context.queue, queues: queues.map(({ name }) => name), removed: Math.max(0, removed), counts: after })
      : `${context.queue}: drained ${Math.max(0, removed)} waiting job(s)`,
  );
}

/** `jobs show ID`: state, attempts, error and usage; the prompt and the answer only with `--show-content`. */
export async function jobsShowCommand(context: Context, jobId: string, showContent: boolean): Promise<void> {
  if (!isJobId(jobId)) throw new CliError(EXIT.usage, `job id ${shown(jobId)}: expected an id as enqueue returns it, job_ and 22 letters, digits, _ or -`);
  let found: { name: string; job: Job<unknown, unknown> } | undefined;
  for (const { name, queue } of await openQueues(context)) {
    const job = await withDeadline(Job.fromId<unknown, unknown>(queue, jobId), context.timeoutMs, 'job');
    if (job !== undefined) {
      found = { name, job };
      break;
    }
  }
  if (found === undefined) throw new CliError(EXIT.notFound, `no job ${shown(jobId)} in queue ${shown(context.queue)}`);
  const { job } = found;
  const state = await withDeadline(job.getState(), context.timeoutMs, 'job state');
  const request = requestOf(job.data);
  // a completed job returns { answer, upstream } (a first-version job, the bare Message)
  const answer = state === 'completed' ? (decodeResult(job.returnvalue).answer as Partial<Anthropic.Message> | null) : null;
  const view = {
    id: jobId,
    queue: found.name, // where it is: the queue asked for, or one of its pool queues
    state,
    tenant: request.tenant,
    priority: request.priority,
    model: request.model,
    maxTokens: request.maxTokens,
    attemptsMade: job.attemptsMade,
    attempts: job.opts.attempts ?? 1,
    createdAtMs: job.timestamp,
    startedAtMs: job.processedOn ?? null,
    finishedAtMs: job.finishedOn ?? null,
    // a failed job's final error, or the last attempt's error of a job that BullMQ retries
    error: job.failedReason ? decodeFailure(job.failedReason) : null,
    usage: answer?.usage ?? null,
    ...(showContent ? { request: request.params, answer: answer?.content ?? answer ?? null } : {}),
  };
  if (context.json) {
    context.print(JSON.stringify(view));
    return;
  }
  const time = (ms: number | null) => (ms === null || ms === undefined ? '-' : new Date(ms).toISOString());
  const lines = [
    `job ${view.id} (queue ${view.queue})`,
    `  state        ${view.state}`,
    `  tenant       ${view.tenant ?? '-'}   priority ${view.priority ?? '-'}   model ${view.model ?? '-'}   max_tokens ${view.maxTokens ?? '-'}`,
    `  attempts     ${view.attemptsMade} of ${view.attempts}`,
    `  created      ${time(view.createdAtMs)}   started ${time(view.startedAtMs)}   finished ${time(view.finishedAtMs)}`,
  ];
  if (view.error !== null) lines.push(`  error        ${view.error.status} ${view.error.body.error.type}: ${view.error.body.error.message}`);
  if (view.usage !== null)
    lines.push(
      `  usage        input ${view.usage.input_tokens}, output ${view.usage.output_tokens}, cache read ${view.usage.cache_read_input_tokens ?? 0}, cache write ${
        view.usage.cache_creation_input_tokens ?? 0
      }`,
    );
  if (showContent) lines.push(`  request      ${JSON.stringify(view.request)}`, `  answer       ${JSON.stringify(view.answer)}`);
  else lines.push('  (prompt and answer hidden; --show-content prints them)');
  context.print(lines.join('\n'));
}

/** What `jobs show` tells of a job's request, read from either payload version without trusting its shape. */
function requestOf(data: unknown): { tenant: string | null; priority: number | null; model: string | null; maxTokens: number | null; params: unknown } {
  let parsed: ParsedJob | undefined;
  try {
    parsed = parseJobData(data);
  } catch {
    parsed = undefined; // not a Tollgate job: show what is known, never fail the command on it
  }
  const params = parsed?.params ?? null;
  return {
    tenant: parsed?.tenant ?? null,
    priority: parsed?.priority ?? null,
    model: typeof params?.model === 'string' ? params.model : null,
    maxTokens: typeof params?.max_tokens === 'number' ? params.max_tokens : null,
    params,
  };
}
