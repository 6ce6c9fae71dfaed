import { Agent, request } from 'node:http';

/** A keep-alive HTTP client for the overlap server: one socket per local slot, no reconnects mid-run. */
export class UpstreamClient {
  readonly #agent: Agent;
  readonly #url: string;

  constructor(url: string, sockets: number) {
    this.#url = url;
    this.#agent = new Agent({ keepAlive: true, maxSockets: sockets });
  }

  /** One call; resolves when the whole answer is read. `holdMs` overrides the server's hold. */
  call(holdMs?: number): Promise<void> {
    const url = holdMs === undefined ? this.#url : `${this.#url}/?holdMs=${holdMs}`;
    return new Promise((resolve, reject) => {
      const req = request(url, { agent: this.#agent }, (res) => {
        res.resume();
        res.once('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`upstream answered ${res.statusCode}`))));
        res.once('error', reject);
      });
      req.once('error', reject);
      req.end();
    });
  }

  /** Opens `sockets` keep-alive connections so the measured run pays no TCP handshakes. */
  async warm(sockets: number): Promise<void> {
    await Promise.all(Array.from({ length: sockets }, () => this.call(0)));
  }

  close(): void {
    this.#agent.destroy();
  }
}
