import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Fleet } from '../support/fleet.js';
import { ADMIN_TOKEN, METRICS_TOKEN, TOKEN_ALPHA, startExtraGateway, startSecurityFleet } from './support.js';

let fleet: Fleet;

beforeAll(async () => {
  fleet = await startSecurityFleet();
});
afterAll(() => fleet?.close());

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** Reads the first chunk of an event stream, then lets it go. */
async function firstChunk(response: Response): Promise<string> {
  const reader = response.body?.getReader();
  const chunk = await reader?.read();
  await reader?.cancel();
  return new TextDecoder().decode(chunk?.value);
}

describe('the admin surfaces: /metrics, / and /dashboard/events', () => {
  it('/metrics needs the admin or the metrics token; a tenant token does not open it', async () => {
    for (const headers of [{}, bearer(TOKEN_ALPHA), bearer('tok-guess-0000000000000000')]) {
      const answer = await fetch(`${fleet.gatewayUrl}/metrics`, { headers });
      expect(answer.status).toBe(401);
      expect(await answer.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });
    }
    for (const token of [METRICS_TOKEN, ADMIN_TOKEN]) {
      const answer = await fetch(`${fleet.gatewayUrl}/metrics`, { headers: bearer(token) });
      expect(answer.status).toBe(200);
      expect(await answer.text()).toContain('tollgate_concurrency_limit');
    }
  });

  it('the dashboard needs the admin token (header, or the cookie its sign-in link sets); tenant and scraper tokens do not open it', async () => {
    for (const path of ['/', '/dashboard/events']) {
      for (const headers of [{}, bearer(TOKEN_ALPHA), bearer(METRICS_TOKEN)]) expect((await fetch(`${fleet.gatewayUrl}${path}`, { headers })).status, path).toBe(401);
    }
    expect((await fetch(`${fleet.gatewayUrl}/?token=tok-guess-0000000000000000`, { redirect: 'manual' })).status).toBe(401);
    const signIn = await fetch(`${fleet.gatewayUrl}/?token=${ADMIN_TOKEN}`, { redirect: 'manual' });
    expect(signIn.status).toBe(303);
    expect(signIn.headers.get('location')).toBe('./');
    const cookie = signIn.headers.get('set-cookie') ?? '';
    expect(cookie).toMatch(/^tollgate_admin=[^;]+; HttpOnly; SameSite=Strict; Path=\//);
    const jar = { cookie: cookie.split(';')[0] ?? '' };
    const page = await fetch(`${fleet.gatewayUrl}/`, { headers: jar });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('<title>Tollgate');
    const events = await fetch(`${fleet.gatewayUrl}/dashboard/events`, { headers: jar });
    expect(events.status).toBe(200);
    expect(await firstChunk(events)).toContain('event: history');
    expect((await fetch(`${fleet.gatewayUrl}/`, { headers: bearer(ADMIN_TOKEN) })).status).toBe(200);
  });

  it('GATEWAY_DASHBOARD=public opens the dashboard; METRICS_PORT serves /metrics without a token on 127.0.0.1; GATEWAY_DASHBOARD=off removes it', async () => {
    const open = await startExtraGateway(fleet, { GATEWAY_DASHBOARD: 'public', METRICS_PORT: '0' });
    const off = await startExtraGateway(fleet, { GATEWAY_DASHBOARD: 'off' });
    try {
      expect((await fetch(`${open.url}/`)).status).toBe(200);
      const events = await fetch(`${open.url}/dashboard/events`);
      expect(events.status).toBe(200);
      await firstChunk(events);
      const metricsUrl = String(open.ready.line.metricsUrl);
      expect(new URL(metricsUrl).hostname).toBe('127.0.0.1'); // METRICS_HOST's default: not reachable from outside
      const scraped = await fetch(metricsUrl);
      expect(scraped.status).toBe(200);
      expect(await scraped.text()).toContain('tollgate_concurrency_limit');
      expect((await fetch(new URL('/v1/jobs', metricsUrl))).status).toBe(404); // nothing else is served there
      expect((await fetch(`${open.url}/metrics`)).status).toBe(401); // the main port still needs a token

      for (const path of ['/', '/dashboard/events']) {
        const answer = await fetch(`${off.url}${path}`, { headers: bearer(ADMIN_TOKEN) });
        expect(answer.status).toBe(404);
        expect(await answer.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
      }
    } finally {
      await Promise.all([open.stop(), off.stop()]);
    }
  });
});
