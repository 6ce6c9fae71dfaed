/**
 * Scenario fairness, one worker process: each tenant's callers take a permit of one fleet-wide limiter for their
 * tenant (`acquire({ group })`, as `limitAnthropic(...).withTenant(tenant)` does for every attempt), then make one
 * Messages call to the mock with the plain SDK, then release. The wait is timed around `acquire` alone.
 */
import { performance } from 'node:perf_hooks';
import Anthropic from '@anthropic-ai/sdk';
import type { Limiter } from '@tollgate/limiter';
import { ACQUIRE_TIMEOUT_MS, loadTollgate } from './contenders.js';
import type { FairnessTenantResult, FairnessTrialSpec } from './protocol.js';
import { API_KEY, failureKind, params, requestOptions } from './token-client.js';

export interface FairnessClient {
  /** One call per lane, unmeasured: opens the sockets and loads the limiter's scripts. */
  warm(): Promise<void>;
  /** Every tenant's lanes until the spec's duration has passed; each tenant's waits and failures. */
  run(): Promise<Record<string, FairnessTenantResult>>;
  close(): Promise<void>;
}

export async function createFairnessClient(spec: FairnessTrialSpec, adapter: { redisUrl: string; name: string }): Promise<FairnessClient> {
  const tollgate = await loadTollgate();
  if ('error' in tollgate) throw new Error(`@tollgate/limiter: ${tollgate.error}`);
  const groups = spec.groups;
  const limiter: Limiter = tollgate.createLimiter({
    redis: adapter.redisUrl,
    name: adapter.name,
    concurrency: spec.concurrency,
    // without groups the same limiter serves its one queue in arrival order (a `group` is then ignored)
    ...(groups === undefined ? {} : { groups: Object.fromEntries(Object.entries(groups).map(([tenant, weight]) => [tenant, { weight }])) }),
  });
  await limiter.ready();
  const anthropic = new Anthropic({ baseURL: spec.mockUrl, apiKey: API_KEY, maxRetries: 0 }); // a failure is counted, not retried
  let made = 0;

  /** One permit for `tenant`, one call under it; `onGranted` says whether to make the call (false: after the run). */
  const callAs = async (tenant: string, onGranted: (waitedMs: number) => boolean, failed: Record<string, number>): Promise<boolean> => {
    const askedAtMs = performance.now();
    const permit = await limiter.acquire({ group: tenant, timeoutMs: ACQUIRE_TIMEOUT_MS });
    try {
      if (!onGranted(performance.now() - askedAtMs)) return false;
      await anthropic.messages.create(params(spec.call, made++, spec.model), { ...requestOptions(spec.call), signal: permit.signal });
    } catch (error) {
      const kind = failureKind(error);
      failed[kind] = (failed[kind] ?? 0) + 1;
    } finally {
      await permit.release();
    }
    return true;
  };

  const lanes = spec.tenants.flatMap(({ tenant, lanes: count }) => Array.from({ length: count }, () => tenant));
  return {
    warm: async () => {
      const failed: Record<string, number> = {};
      await Promise.all(lanes.map((tenant) => callAs(tenant, () => true, failed)));
      if (Object.keys(failed).length > 0) throw new Error(`warm-up calls failed: ${JSON.stringify(failed)}`);
    },
    run: async () => {
      const results: Record<string, FairnessTenantResult> = Object.fromEntries(spec.tenants.map(({ tenant }) => [tenant, { waitsMs: [], failed: {} }]));
      const endsAtMs = performance.now() + spec.durationMs;
      const lane = async (tenant: string): Promise<void> => {
        const result = results[tenant];
        if (result === undefined) throw new Error(`no result for tenant ${tenant}`);
        // a grant that comes after the end is released unused: the counts cover the run's duration only
        const counted = (waitedMs: number): boolean => {
          if (performance.now() >= endsAtMs) return false;
          result.waitsMs.push(waitedMs);
          return true;
        };
        while (performance.now() < endsAtMs) {
          if (!(await callAs(tenant, counted, result.failed))) return;
        }
      };
      await Promise.all(lanes.map(lane));
      return results;
    },
    close: () => limiter.close(),
  };
}
