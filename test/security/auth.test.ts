import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fleet } from '../support/fleet.js';
import { rawRequest, type RawAnswer } from '../support/raw-http.js';
import { TOKEN_ALPHA, asTenant, body, jobCount, json, startSecurityFleet } from './support.js';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startSecurityFleet();
});
afterAll(() => fleet?.close());

/** Every route of the gateway that is not public, with a request target for it and a body. */
const ROUTES: ReadonlyArray<{ method: string; path: string; body?: string }> = [
  { method: 'POST', path: '/v1/messages', body: json(body('plain')) },
  { method: 'POST', path: '/v1/messages', body: json(body('stream', { stream: true })) },
  { method: 'POST', path: '/v1/jobs', body: json(body('job')) },
  { method: 'GET', path: '/v1/jobs/job_AAAAAAAAAAAAAAAAAAAAAA' },
  { method: 'DELETE', path: '/v1/jobs/job_AAAAAAAAAAAAAAAAAAAAAA' },
  { method: 'GET', path: '/metrics' },
  { method: 'GET', path: '/' },
  { method: 'GET', path: '/dashboard/events' },
  // fastify answers HEAD for every GET route: the same route, the same check
  { method: 'HEAD', path: '/v1/jobs/job_AAAAAAAAAAAAAAAAAAAAAA' },
  { method: 'HEAD', path: '/metrics' },
  { method: 'HEAD', path: '/' },
  { method: 'PUT', path: '/v1/messages', body: json(body('put')) },
  { method: 'OPTIONS', path: '/v1/messages' },
];

const percent = (text: string) => [...text].map((c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join('');
const percentUpper = (text: string) => percent(text).toUpperCase();

/** Ways to spell one path that a router may read as the same route while a naive check on the raw target does not. */
function spellings(path: string): string[] {
  const segments = path.split('/').filter((segment) => segment.length > 0);
  const first = segments[0] ?? '';
  const rest = segments.slice(1).join('/');
  const tail = rest.length > 0 ? `/${rest}` : '';
  const lastCut = path.lastIndexOf('/');
  const variants = [
    path,
    `/${percent(first)}${tail}`, // /%76%31/messages
    `/${percentUpper(first)}${tail}`,
    `/${first.slice(0, -1)}${percent(first.slice(-1))}${tail}`, // /v%31/messages
    `/${first}/${percent(rest)}`,
    `/${percent(first)}%2f${percent(rest)}`, // an encoded slash
    `/${percent(first)}%252f${rest}`, // double encoding
    `/%25${percent(first).slice(1)}${tail}`,
    `HTTP://x${path}`, // absolute form, upper-case scheme
    `http://tollgate.invalid${path}`,
    `https://x:443${path}`,
    `http://x:80//${path.slice(1)}`,
    `//${path.slice(1)}`,
    `${path.slice(0, lastCut)}//${path.slice(lastCut + 1)}`,
    `/./${path.slice(1)}`,
    `/x/..${path}`,
    `/%2e${path}`,
    `/x/%2e%2e${path}`,
    `${path}.`,
    `${path}./`,
    `${path}/`,
    `${path}//`,
    `${path}%20`,
    `${path}%00`,
    `${path}%09`,
    path.toUpperCase(),
    path.replace(/[a-z]/, (c) => c.toUpperCase()),
    `${path};x=1`,
    `/${first};${tail}`,
    `/${first};jsessionid=1${tail}`,
    `${path}?x=1`,
    `${path}#fragment`,
    `${path}?token=`,
    path.replaceAll('/', '\\'),
    `/${first}\\${rest}`,
    `${path}%2f`,
    `${path}%3f`,
    `${path}%23`,
    `/%2F${path.slice(1)}`,
    `*`,
  ];
  return [...new Set(variants)];
}

function expectClosedAnswer(answer: RawAnswer, what: string): void {
  // never a success, never a redirect into the route; only "who are you", "nothing here" or "bad request"
  expect([400, 401, 404, 414], what).toContain(answer.status);
  if (!what.startsWith('HEAD ') && (answer.status !== 400 || answer.body.length > 0)) {
    const parsed = JSON.parse(answer.body) as { type?: string; error?: { type?: string; message?: string }; request_id?: unknown };
    expect(parsed.type, what).toBe('error');
    expect(typeof parsed.error?.type, what).toBe('string');
    expect(typeof parsed.error?.message, what).toBe('string');
    expect(typeof parsed.request_id, what).toBe('string');
  }
}

describe('deny by default: no request reaches a route without a token, however its target is spelled', () => {
  it('every encoding trick against every route, over raw TCP: 401, 404 or 400 in the envelope, never a job', async () => {
    const { host } = new URL(fleet.gatewayUrl);
    const statuses = new Map<number, number>();
    let sent = 0;
    for (const route of ROUTES) {
      for (const target of spellings(route.path)) {
        const head = [`${route.method} ${target} HTTP/1.1`, `host: ${host}`, ...(route.body === undefined ? [] : ['content-type: application/json'])].join('\r\n');
        const answer = await rawRequest(fleet.gatewayUrl, head, route.body ?? '');
        expectClosedAnswer(answer, `${route.method} ${target} → ${answer.status} ${answer.body.slice(0, 200)}`);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        sent += 1;
      }
    }
    expect(sent).toBeGreaterThan(ROUTES.length * 30);
    expect(statuses.get(401) ?? 0).toBeGreaterThan(ROUTES.length * 5); // the tricks did reach the routes, and were refused
    expect(await jobCount(fleet)).toBe(0);
    const stats = await fleet.mockStats();
    expect(Object.values(stats.byStatus).reduce((sum, n) => sum + n, 0)).toBe(0); // no upstream call at all

    // the same request with a token is served, so the refusals above were the gateway's decision
    const served = await fetch(`${fleet.gatewayUrl}/v1/messages`, { method: 'POST', headers: asTenant(TOKEN_ALPHA), body: json(body('with token')) });
    expect(served.status).toBe(200);
    const encoded = await rawRequest(
      fleet.gatewayUrl,
      [`POST /%76%31/messages HTTP/1.1`, `host: ${host}`, 'content-type: application/json', `authorization: Bearer ${TOKEN_ALPHA}`].join('\r\n'),
      json(body('encoded with token')),
    );
    expect(encoded.status).toBe(200);
  });

  it('GET /health is the one open route; wrong tokens get 401 without echoing them', async () => {
    expect((await fetch(`${fleet.gatewayUrl}/health`)).status).toBe(200);
    const wrong = 'not-a-token-of-anyone-0123456789';
    for (const headers of [{ authorization: `Bearer ${wrong}` }, { 'x-api-key': wrong }, { authorization: `Basic ${wrong}` }]) {
      const answer = await fetch(`${fleet.gatewayUrl}/v1/jobs`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: json(body('wrong')) });
      expect(answer.status).toBe(401);
      const text = await answer.text();
      expect(text).not.toContain(wrong);
      expect(JSON.parse(text)).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    }
    expect(await jobCount(fleet)).toBe(2); // only the two requests with a token above
  });
});
