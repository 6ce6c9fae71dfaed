import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { monotonicMs } from './protocol.js';

/** Longest hold a request may ask for. */
const HOLD_MS_MAX = 60_000;

/** One call as the witness saw it: from its arrival to its answer, or to the caller closing it. */
export interface WitnessCall {
  op: number;
  pid: number;
  startAt: number;
  endAt: number | undefined;
  /** The caller closed the call before its answer (its permit's signal aborted, or it died). */
  closedEarly: boolean;
}

/**
 * The overlap counter: an HTTP server standing in for the upstream, outside every limiter. A holder
 * calls `/hold?op=N&ms=M&pid=P` for the time it holds its permit; the server keeps each call's start
 * and end on the shared monotonic clock and counts calls in flight.
 */
export interface WitnessServer {
  readonly url: string;
  readonly calls: ReadonlyMap<number, WitnessCall>;
  inFlight(): number;
  maxInFlight(): number;
  close(): Promise<void>;
}

export async function startWitnessServer(): Promise<WitnessServer> {
  const calls = new Map<number, WitnessCall>();
  let inFlight = 0;
  let maxInFlight = 0;
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const op = Number(url.searchParams.get('op'));
    const holdMs = Math.min(HOLD_MS_MAX, Math.max(0, Number(url.searchParams.get('ms')) || 0));
    const call: WitnessCall = { op, pid: Number(url.searchParams.get('pid')), startAt: monotonicMs(), endAt: undefined, closedEarly: false };
    calls.set(op, call);
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const end = (closedEarly: boolean) => {
      if (call.endAt !== undefined) return;
      call.endAt = monotonicMs();
      call.closedEarly = closedEarly;
      inFlight--;
      clearTimeout(timer);
    };
    const timer = setTimeout(() => {
      end(false);
      res.end('ok');
    }, holdMs);
    res.on('close', () => end(true));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    inFlight: () => inFlight,
    maxInFlight: () => maxInFlight,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
