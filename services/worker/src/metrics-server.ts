import { createServer, type Server } from 'node:http';
import { toError } from '@tollgate/limiter/internal';
import type { AddressInfo } from 'node:net';
import type { ServiceMetrics } from './metrics.js';

/** What `/readyz` reports: ready, or the reasons it is not (each a short phrase). */
export interface Readiness {
  ready: boolean;
  reasons: string[];
}

/** The worker's HTTP endpoints on its metrics port. */
export interface MetricsServerOptions {
  port: number;
  host: string;
  /** Answers `/readyz`: Redis reachable, limiter ready, not draining. */
  readiness(): Promise<Readiness>;
}

const JSON_TYPE = 'application/json; charset=utf-8';

/**
 * A plain HTTP server for Prometheus and the orchestrator: `GET /metrics`, `GET /healthz` (the process is alive: it
 * answers) and `GET /readyz` (200 when it can take work, 503 with the reasons otherwise).
 */
export async function startMetricsServer(metrics: ServiceMetrics, options: MetricsServerOptions): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    const path = (request.url ?? '').split('?')[0];
    if (request.method !== 'GET') {
      response.writeHead(405).end();
      return;
    }
    if (path === '/healthz') {
      response.writeHead(200, { 'content-type': JSON_TYPE }).end(JSON.stringify({ status: 'alive' }));
      return;
    }
    if (path === '/readyz') {
      options
        .readiness()
        .then(({ ready, reasons }) => response.writeHead(ready ? 200 : 503, { 'content-type': JSON_TYPE }).end(JSON.stringify({ status: ready ? 'ready' : 'not ready', reasons })))
        .catch((error: unknown) => response.writeHead(503, { 'content-type': JSON_TYPE }).end(JSON.stringify({ status: 'not ready', reasons: [toError(error).message] })));
      return;
    }
    if (path !== '/metrics') {
      response.writeHead(404).end();
      return;
    }
    metrics
      .render()
      .then((body) => response.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body))
      .catch(() => response.writeHead(500).end());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const shownHost = options.host === '0.0.0.0' ? '127.0.0.1' : options.host;
  return {
    url: `http://${shownHost}:${address.port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a keep-alive scraper must not hold the drain open
      }),
  };
}
