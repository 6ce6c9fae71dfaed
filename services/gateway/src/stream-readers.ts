import { randomBytes } from 'node:crypto';
import { JOB_EVENTS_BLOCK_MS, toJobEvent, type JobEvent } from '@tollgate/queue/internal';
import type { Cluster, Redis } from 'ioredis';

/** Streams one shared reader follows; a reader's XREAD names every one of its streams, so keep it modest. */
export const STREAMS_PER_READER = 100;
/** Entries read per stream per round trip. */
const READ_COUNT = 1_000;
/** After a failed read, the reader waits this long before it reads again (ioredis reconnects meanwhile), in ms. */
const READ_RETRY_MS = 200;
/** A reader's wake stream lives this long after the last wake (it is deleted on close; this covers a crash), in ms. */
const WAKE_TTL_MS = 10 * 60 * 1000;

type StreamReply = Array<[string, Array<[string, string[]]>]> | null;

interface Subscriber {
  lastId: string;
  deliver(events: JobEvent[]): void;
}

/**
 * One connection that follows many job event streams with one blocking XREAD over all their keys. A stream added
 * while the read blocks is picked up at once: the reader also reads its own wake stream, and adding a stream writes
 * one entry to it. Connections stay bounded whatever the number of open streams (the old design held one per stream).
 */
class SharedReader {
  readonly #reader: Redis | Cluster;
  readonly #commands: Redis | Cluster;
  readonly #wakeKey: string;
  readonly #subscribers = new Map<string, Subscriber>();
  #wakeLastId = '0';
  #reading = false;
  #idle: (() => void) | undefined;
  #closed = false;

  constructor(reader: Redis | Cluster, commands: Redis | Cluster, wakeKey: string) {
    this.#reader = reader;
    this.#commands = commands;
    this.#wakeKey = wakeKey;
    void this.#loop();
  }

  get size(): number {
    return this.#subscribers.size;
  }

  /** Follows `key` from its start until `signal` aborts. */
  async *follow(key: string, signal: AbortSignal): AsyncGenerator<JobEvent> {
    const pending: JobEvent[] = [];
    let notify: (() => void) | undefined;
    const subscriber: Subscriber = {
      lastId: '0',
      deliver: (events) => {
        pending.push(...events);
        notify?.();
      },
    };
    const onAbort = () => notify?.();
    signal.addEventListener('abort', onAbort);
    this.#subscribers.set(key, subscriber);
    this.#wake();
    try {
      while (!signal.aborted && !this.#closed) {
        if (pending.length === 0) {
          await new Promise<void>((resolve) => (notify = resolve));
          notify = undefined;
          continue;
        }
        yield pending.shift() as JobEvent;
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.#subscribers.delete(key);
    }
  }

  close(): void {
    this.#closed = true;
    this.#idle?.();
    for (const subscriber of this.#subscribers.values()) subscriber.deliver([]);
    void this.#commands.del(this.#wakeKey).catch(() => {});
    this.#reader.disconnect();
  }

  #wake(): void {
    if (this.#idle !== undefined) return this.#idle(); // not reading: start now
    if (!this.#reading) return;
    // the XREAD in flight does not name the new stream: one entry on the wake stream ends it at once
    void this.#commands
      .pipeline()
      .xadd(this.#wakeKey, 'MAXLEN', '1', '*', 'w', '1')
      .pexpire(this.#wakeKey, WAKE_TTL_MS)
      .exec()
      .catch(() => {}); // Redis away: the read's own BLOCK timeout picks the stream up
  }

  async #loop(): Promise<void> {
    while (!this.#closed) {
      if (this.#subscribers.size === 0) {
        await new Promise<void>((resolve) => (this.#idle = resolve));
        this.#idle = undefined;
        continue;
      }
      this.#reading = true; // before the keys are taken: a stream added from here on writes a wake entry
      const keys = [...this.#subscribers.keys()];
      const ids = keys.map((key) => this.#subscribers.get(key)?.lastId ?? '0');
      let reply: StreamReply;
      try {
        reply = (await this.#reader.xread('COUNT', READ_COUNT, 'BLOCK', JOB_EVENTS_BLOCK_MS, 'STREAMS', this.#wakeKey, ...keys, this.#wakeLastId, ...ids)) as StreamReply;
      } catch {
        this.#reading = false;
        if (this.#closed) return;
        await new Promise((resolve) => setTimeout(resolve, READ_RETRY_MS)); // each stream's deadline is its relay's
        continue;
      } finally {
        this.#reading = false;
      }
      for (const [key, entries] of reply ?? []) {
        const last = entries.at(-1)?.[0];
        if (last === undefined) continue;
        if (key === this.#wakeKey) {
          this.#wakeLastId = last;
          continue;
        }
        const subscriber = this.#subscribers.get(key);
        if (subscriber === undefined) continue; // its relay ended meanwhile
        subscriber.lastId = last;
        subscriber.deliver(entries.map(([, fields]) => toJobEvent(fields)));
      }
    }
  }
}

/**
 * The gateway's readers of job event streams: shared readers of up to {@link STREAMS_PER_READER} streams each, opened
 * as streams need them and kept (a gateway with `GATEWAY_STREAMS_MAX` open streams holds at most
 * ceil(GATEWAY_STREAMS_MAX / STREAMS_PER_READER) reader connections).
 */
export class StreamReaders {
  readonly #readers: SharedReader[] = [];
  readonly #open: () => Redis | Cluster;
  readonly #commands: Redis | Cluster;
  readonly #wakePrefix: string;
  #closed = false;

  /** `open` makes a new connection for blocking reads; `commands` is a command connection for the wake entries. */
  constructor(open: () => Redis | Cluster, commands: Redis | Cluster, wakePrefix: string) {
    this.#open = open;
    this.#commands = commands;
    this.#wakePrefix = wakePrefix;
  }

  /** Reader connections open now. */
  get connections(): number {
    return this.#readers.length;
  }

  /** The events of stream `key` from its start, until `signal` aborts. */
  follow(key: string, signal: AbortSignal): AsyncGenerator<JobEvent> {
    if (this.#closed) throw new Error('stream readers closed');
    let reader = this.#readers.reduce<SharedReader | undefined>((best, candidate) => (best === undefined || candidate.size < best.size ? candidate : best), undefined);
    if (reader === undefined || reader.size >= STREAMS_PER_READER) {
      reader = new SharedReader(this.#open(), this.#commands, `${this.#wakePrefix}${randomBytes(8).toString('hex')}`);
      this.#readers.push(reader);
    }
    return reader.follow(key, signal);
  }

  close(): void {
    this.#closed = true;
    for (const reader of this.#readers.splice(0)) reader.close();
  }
}
