import { withDeadline } from '@tollgate/queue';
import type { Cluster, Redis } from 'ioredis';

/** Idle readers kept for the next streaming requests; more are opened under a burst and closed after it. */
export const IDLE_READERS_MAX = 32;

/**
 * Connections for relaying streaming jobs: a relay holds one for its blocking reads, then gives it back. Reusing
 * them spares each streaming request a TCP connect and the client's ready check, the step that times out first on a
 * loaded machine.
 */
export class ReaderPool {
  readonly #idle: Array<Redis | Cluster> = [];
  readonly #open: () => Redis | Cluster;
  readonly #connectTimeoutMs: number;
  #closed = false;

  /** `open` makes a new lazy connection (`lazyConnect: true`, errors handled). */
  constructor(open: () => Redis | Cluster, connectTimeoutMs: number) {
    this.#open = open;
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  /** An idle reader, or a new one connected within the timeout (else `QueueUnavailableError`). */
  async take(): Promise<Redis | Cluster> {
    for (let reader = this.#idle.pop(); reader !== undefined; reader = this.#idle.pop()) {
      if (reader.status === 'ready') return reader;
      reader.disconnect(); // it lost its connection while idle
    }
    const reader = this.#open();
    try {
      await withDeadline(reader.connect(), this.#connectTimeoutMs, 'stream reader');
    } catch (error) {
      reader.disconnect();
      throw error;
    }
    return reader;
  }

  /** Takes a reader back. `idle` says no command of the relay is pending on it; otherwise it is closed. */
  give(reader: Redis | Cluster, idle: boolean): void {
    if (idle && !this.#closed && reader.status === 'ready' && this.#idle.length < IDLE_READERS_MAX) this.#idle.push(reader);
    else reader.disconnect();
  }

  close(): void {
    this.#closed = true;
    for (const reader of this.#idle.splice(0)) reader.disconnect();
  }
}
