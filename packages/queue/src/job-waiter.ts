import type { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { InvalidArgumentError, TIMEOUT_MS_MAX } from '@tollgate/limiter';
import { Job, QueueEvents, type Queue } from 'bullmq';
import { JobLostError, JobWaitTimeoutError, QueueUnavailableError, UpstreamError } from './errors.js';
import { decodeFailure } from './failure.js';
import { isJobId } from './job-ids.js';
import type { QueueKeys } from './keys.js';
import { blockingConnection, type Deadline, type OwnedRedis, type RedisInput } from './redis.js';
import { decodeResult, type JobResult } from './upstream.js';

/** Default wait of `enqueueAndWait`. */
export const WAIT_MS_DEFAULT = 10 * 60 * 1000;

export interface WaitOptions {
  /** Longest wait for the job to finish, in ms (0 to 2^31 − 1). */
  timeoutMs?: number;
  /** Stops waiting (rejects with the signal's reason); the job itself goes on. */
  signal?: AbortSignal;
}

/** What a {@link JobWaiter} reads from: the producer's queue, its command connection, and its settings. */
export interface JobWaiterSetup {
  queue: Queue;
  keys: QueueKeys;
  /** What the producer was given: the event reader opens its own blocking connection from it. */
  redis: RedisInput;
  /** The producer's command connection (state reads, the epoch check). */
  commands: OwnedRedis;
  within: Deadline;
  dataLossCheckMs: number;
}

/** The one reader of job events, created on the first wait. */
interface QueueEventsEntry {
  owned: OwnedRedis;
  events: QueueEvents | undefined;
  ready: Promise<void>;
}

/**
 * Waits for jobs to finish: one QueueEvents reader per producer, a state read per wait (the job may have finished
 * before the listeners were set), and re-checks of every waiting call when a connection comes back or Redis lost its
 * data (events emitted meanwhile are not replayed).
 */
export class JobWaiter {
  readonly #setup: JobWaiterSetup;
  #events: QueueEventsEntry | undefined;
  /** The dataset's epoch as this producer last saw it, and the timer that checks it while calls wait. */
  #epoch: string | undefined;
  #lossTimer: NodeJS.Timeout | undefined;
  /**
   * State checks of the calls waiting now. Events emitted while the event reader was cut off (a Redis restart) are
   * not replayed to it, so every waiting call reads its job's state again when the reader's connection is back.
   */
  readonly #recheckOnReconnect = new Set<() => void>();

  constructor(setup: JobWaiterSetup) {
    this.#setup = setup;
    this.#recheckWhenReconnected(setup.commands.client); // the state reads of waiting calls need this connection back too
  }

  /**
   * Waits for `jobId` to finish and returns its result.
   * @throws {@link InvalidArgumentError} for a malformed id or `timeoutMs`; {@link UpstreamError} when the job failed;
   * {@link JobWaitTimeoutError} after `timeoutMs`; {@link JobLostError} when the job is gone unfinished.
   */
  async wait(jobId: string, options: WaitOptions = {}): Promise<JobResult> {
    const timeoutMs = options.timeoutMs ?? WAIT_MS_DEFAULT;
    if (!isJobId(jobId)) throw new InvalidArgumentError('jobId', jobId, 'a job id as enqueue returns it (job_ and 22 letters, digits, _ or -)');
    if (typeof timeoutMs !== 'number' || !Number.isFinite(timeoutMs) || timeoutMs < 0 || timeoutMs > TIMEOUT_MS_MAX) {
      throw new InvalidArgumentError('timeoutMs', timeoutMs, `a number of ms from 0 to ${TIMEOUT_MS_MAX}`);
    }
    const { queue, within } = this.#setup;
    // per-job event names (`completed:<id>`) are emitted by QueueEvents but not in its listener type
    const events = (await this.ready()) as unknown as EventEmitter;
    return new Promise<JobResult>((resolve, reject) => {
      const onCompleted = (args: { returnvalue: unknown }) => finish(() => resolve(decodeResult(args.returnvalue)));
      const onFailed = (args: { failedReason: string }) => finish(() => reject(upstreamError(jobId, args.failedReason)));
      const timer = setTimeout(() => finish(() => reject(new JobWaitTimeoutError(jobId, timeoutMs))), timeoutMs);
      const onAbort = () => finish(() => reject(options.signal?.reason));
      options.signal?.addEventListener('abort', onAbort, { once: true });
      let done = false;
      // The job may have finished before the listeners were set (or while the reader was cut off): read its state.
      const checkState = () => {
        // the state first, then the job: a finished job's hash no longer changes, while a hash read first could be
        // the active job's, without the answer, followed by a state read that already says completed
        within(queue.getJobState(jobId), 'wait')
          .then(async (state) => {
            // gone before it finished: Redis lost its data (or someone removed it); the SDK retries a 503
            if (state === 'unknown') return finish(() => reject(new JobLostError(jobId)));
            if (state !== 'completed' && state !== 'failed') return;
            const job = await within(Job.fromId(queue, jobId), 'wait');
            if (job === undefined) return; // removed by retention meanwhile: the events decide, or the deadline
            if (state === 'completed') finish(() => resolve(decodeResult(job.returnvalue)));
            else finish(() => reject(upstreamError(jobId, job.failedReason)));
          })
          .catch(() => {
            // the state could not be read in time (Redis slow or briefly away): the listeners stay, the overall deadline holds
          });
      };
      const finish = (settle: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        options.signal?.removeEventListener('abort', onAbort);
        events.off(`completed:${jobId}`, onCompleted);
        events.off(`failed:${jobId}`, onFailed);
        this.#recheckOnReconnect.delete(checkState);
        this.#watchForDataLoss();
        settle();
      };
      events.on(`completed:${jobId}`, onCompleted);
      events.on(`failed:${jobId}`, onFailed);
      this.#recheckOnReconnect.add(checkState);
      this.#watchForDataLoss();
      checkState();
    });
  }

  /** The event reader, started on the first call; a reader that failed to start is replaced on the next one. */
  async ready(): Promise<QueueEvents> {
    if (this.#events === undefined) this.#events = this.#startReader();
    const current = this.#events;
    await this.#setup.within(current.ready, 'wait');
    if (current.events === undefined) throw new QueueUnavailableError('wait: the producer was closed');
    return current.events;
  }

  /** Stops the reader and the data-loss checks. Idempotent. */
  async close(): Promise<void> {
    clearInterval(this.#lossTimer);
    this.#lossTimer = undefined;
    const events = this.#events;
    this.#events = undefined;
    await events?.events?.close().catch(() => {});
    if (events?.owned.owned) events.owned.client.disconnect();
  }

  #startReader(): QueueEventsEntry {
    const { keys, queue } = this.#setup;
    const owned = blockingConnection(this.#setup.redis);
    owned.client.on('error', () => {}); // QueueEvents reconnects by itself
    this.#recheckWhenReconnected(owned.client); // events emitted while it was cut off are not replayed
    const entry: QueueEventsEntry = { owned, events: undefined, ready: Promise.resolve() };
    entry.ready = (async () => {
      // Read from the stream's current end, not from '$': QueueEvents sends its first XREAD a round trip after it
      // is ready, and a job that ended in between would be missed by a wait whose state read came just before.
      // The read uses the reader's own connection: it waits out a reconnect and goes before the reader's XREAD.
      const [last] = await owned.client.xrevrange(keys.queueEvents, '+', '-', 'COUNT', 1);
      if (this.#events !== entry) return; // closed meanwhile
      const events = new QueueEvents(queue.name, {
        connection: owned.client,
        prefix: keys.prefix,
        skipVersionCheck: true,
        lastEventId: last?.[0] ?? '0-0',
      });
      events.on('error', () => {});
      events.setMaxListeners(0); // one pair of listeners per waiting call
      entry.events = events;
      await events.waitUntilReady();
    })();
    // A reader that failed to start is replaced on the next call; one that is merely slow is kept (it reconnects).
    entry.ready.catch(() => {
      if (this.#events !== entry) return;
      this.#events = undefined;
      void entry.events?.close().catch(() => {});
      if (owned.owned) owned.client.disconnect();
    });
    return entry;
  }

  /**
   * While calls wait, checks every `dataLossCheckMs` that Redis still holds this dataset's epoch (one command,
   * whatever the number of waits). A flush or a restart without persistence drops no connection, so without this a
   * wait for a job that no longer exists would last until its deadline; with it, every waiting call reads its job's
   * state again and a vanished job answers {@link JobLostError}.
   */
  #watchForDataLoss(): void {
    if (this.#recheckOnReconnect.size === 0) {
      clearInterval(this.#lossTimer);
      this.#lossTimer = undefined;
      return;
    }
    if (this.#lossTimer !== undefined) return;
    const check = () => void this.#checkEpoch().catch(() => {}); // Redis away: the reconnect re-check covers it
    this.#lossTimer = setInterval(check, this.#setup.dataLossCheckMs);
    this.#lossTimer.unref();
    check();
  }

  async #checkEpoch(): Promise<void> {
    const candidate = randomBytes(8).toString('hex');
    // SET NX GET: creates the epoch if it is missing, and answers the value that was there (null: none was)
    const previous = (await this.#setup.within(this.#setup.commands.client.call('SET', this.#setup.keys.epoch, candidate, 'NX', 'GET'), 'epoch')) as string | null;
    const current = previous ?? candidate;
    const lost = this.#epoch !== undefined && current !== this.#epoch;
    this.#epoch = current;
    if (lost) this.#recheckAll();
  }

  /** After `client` reconnects (not at its first connect), every waiting call reads its job's state again. */
  #recheckWhenReconnected(client: OwnedRedis['client']): void {
    let connectedBefore = false;
    client.on('ready', () => {
      if (connectedBefore) this.#recheckAll();
      connectedBefore = true;
    });
  }

  #recheckAll(): void {
    for (const checkState of this.#recheckOnReconnect) checkState();
  }
}

function upstreamError(jobId: string, failedReason: string | undefined): UpstreamError {
  const failure = decodeFailure(failedReason);
  return new UpstreamError(jobId, failure.status, failure.body, failure.headers);
}
