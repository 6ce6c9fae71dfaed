import type { Cluster, Redis } from 'ioredis';

/** A streaming job's events live this long after the last one, in ms: long enough for a slow reader to finish. */
export const JOB_EVENTS_TTL_MS = 10 * 60 * 1000;
/** Entries kept per job stream (approximate trim): far above the events of one answer. */
export const JOB_EVENTS_MAX = 100_000;
/** How long one blocking read waits before the reader checks its signal again, in ms. */
export const JOB_EVENTS_BLOCK_MS = 1_000;
/** The event name the worker writes when a streaming job fails for good; its data is a `JobFailure`. */
export const JOB_FAILED_EVENT = 'tollgate_job_failed';

/** One entry of a job's event stream: an SSE event of one attempt, or {@link JOB_FAILED_EVENT}. */
export interface JobEvent {
  /** BullMQ attempt (1-based) that produced it: a new attempt restarts the answer. */
  attempt: number;
  /** The SSE event name (`message_start`, `content_block_delta`, …, `error`). */
  name: string;
  /** The event's JSON, as the upstream sent it. */
  data: string;
}

/** Writes one attempt's events to the job's Redis stream, in order (one connection, awaited one by one). */
export class JobEventPublisher {
  readonly #redis: Redis | Cluster;
  readonly #key: string;
  readonly #attempt: number;
  #written = 0;

  constructor(redis: Redis | Cluster, key: string, attempt: number) {
    this.#redis = redis;
    this.#key = key;
    this.#attempt = attempt;
  }

  /** Events written by this attempt so far. */
  get written(): number {
    return this.#written;
  }

  async publish(name: string, data: unknown): Promise<void> {
    await this.publishJson(name, JSON.stringify(data));
  }

  /** Writes an event already serialized (an SDK event must be serialized when it arrives: later events change its objects). */
  async publishJson(name: string, json: string): Promise<void> {
    await this.#redis.xadd(this.#key, 'MAXLEN', '~', JOB_EVENTS_MAX, '*', 'a', this.#attempt, 'e', name, 'd', json);
    this.#written += 1;
    if (this.#written === 1) await this.#redis.pexpire(this.#key, JOB_EVENTS_TTL_MS);
  }

  /** Called once at the end: the key lives `JOB_EVENTS_TTL_MS` after the last event. */
  async finish(): Promise<void> {
    if (this.#written > 0) await this.#redis.pexpire(this.#key, JOB_EVENTS_TTL_MS);
  }
}

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

/** One stream entry's fields as a {@link JobEvent}. */
export function toJobEvent(fields: readonly string[]): JobEvent {
  const record: Record<string, string> = {};
  for (let i = 0; i + 1 < fields.length; i += 2) record[fields[i] ?? ''] = fields[i + 1] ?? '';
  return { attempt: Number(record.a ?? 0), name: record.e ?? '', data: record.d ?? 'null' };
}

/**
 * Reads a job's event stream from the start, blocking between entries, until `signal` aborts. Use a connection of
 * its own: a blocking read holds it.
 */
export async function* readJobEvents(redis: Redis | Cluster, key: string, signal: AbortSignal): AsyncGenerator<JobEvent> {
  let lastId = '0';
  while (!signal.aborted) {
    const reply = (await redis.xread('COUNT', 1_000, 'BLOCK', JOB_EVENTS_BLOCK_MS, 'STREAMS', key, lastId)) as StreamReply;
    for (const [, entries] of reply ?? []) {
      for (const [id, fields] of entries) {
        lastId = id;
        yield toJobEvent(fields);
      }
    }
  }
}
