import { connect } from 'node:net';

/** One answer read off a raw socket. */
export interface RawAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Bytes the server sent, headers included. */
  bytes: number;
}

/** Longest a raw request waits for the server to answer and close; a deadline, not a measurement. */
export const RAW_DEADLINE_MS = 30_000;

/**
 * Sends `head` (request line and headers, without the blank line) and `body` exactly as given over a new TCP
 * connection (`connection: close` added), and reads the answer until the server closes. Nothing is normalised on the
 * way, unlike fetch, which would clean up the request target.
 */
export function rawRequest(url: string, head: string, body = ''): Promise<RawAnswer> {
  const { hostname, port } = new URL(url);
  return new Promise<RawAnswer>((resolve, reject) => {
    const socket = connect({ host: hostname, port: Number(port) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no complete answer within ${RAW_DEADLINE_MS} ms to ${JSON.stringify(head.split('\r\n')[0])}`));
    }, RAW_DEADLINE_MS);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      const [statusLine = '', ...lines] = text.slice(0, end < 0 ? text.length : end).split('\r\n');
      const headers: Record<string, string> = {};
      for (const line of lines) {
        const separator = line.indexOf(':');
        if (separator > 0) headers[line.slice(0, separator).trim().toLowerCase()] = line.slice(separator + 1).trim();
      }
      let payload = end < 0 ? '' : text.slice(end + 4);
      if (headers['transfer-encoding'] === 'chunked') payload = unchunk(payload);
      resolve({ status: Number(statusLine.split(' ')[1] ?? 0), headers, body: payload, bytes: Buffer.concat(chunks).length });
    });
    const withLength = body.length > 0 ? `${head}\r\ncontent-length: ${Buffer.byteLength(body)}` : head;
    socket.write(`${withLength}\r\nconnection: close\r\n\r\n${body}`);
  });
}

function unchunk(text: string): string {
  let out = '';
  let rest = text;
  for (;;) {
    const line = rest.indexOf('\r\n');
    if (line < 0) return out;
    const size = Number.parseInt(rest.slice(0, line), 16);
    if (!Number.isFinite(size) || size === 0) return out;
    out += rest.slice(line + 2, line + 2 + size);
    rest = rest.slice(line + 2 + size + 2);
  }
}
