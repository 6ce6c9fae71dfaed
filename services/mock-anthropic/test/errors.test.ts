import Anthropic, { APIError } from '@anthropic-ai/sdk';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startMockAnthropic, type MockAnthropic } from '../src/index.js';
import { thrown } from '@tollgate/test-support';
import { API_KEY, clientFor, MODEL, rawPost, request, VALID_HEADERS } from './helpers.js';

const BODY_LIMIT_BYTES = 2_048;
let mock: MockAnthropic;
let client: Anthropic;

beforeAll(async () => {
  mock = await startMockAnthropic({ apiKeys: [API_KEY], bodyLimitBytes: BODY_LIMIT_BYTES, limits: { rpm: 1_000, itpm: 100_000, otpm: 100_000, roundHeaders: false } });
  client = clientFor(mock);
});
afterAll(() => mock.close());
beforeEach(() => mock.reset());

/** A body the SDK types refuse (the 2026 types have no `temperature`), sent as is. */
function loose(body: Record<string, unknown>): Anthropic.MessageCreateParamsNonStreaming {
  return body as unknown as Anthropic.MessageCreateParamsNonStreaming;
}

/** Asserts the SDK saw an API error of `errorClass` whose body is the documented envelope. */
async function expectApiError(call: () => Promise<unknown>, errorClass: new (...args: never[]) => APIError, status: number, type: string, message?: string): Promise<APIError> {
  const error = await thrown(call);
  expect(error).toBeInstanceOf(errorClass);
  const apiError = error as APIError;
  expect(apiError.status).toBe(status);
  expect(apiError.type).toBe(type);
  expect(apiError.requestID).toMatch(/^req_/);
  expect(apiError.error).toMatchObject({ type: 'error', request_id: apiError.requestID, error: { type } });
  if (message !== undefined) expect(apiError.apiMessage).toBe(message);
  return apiError;
}

describe('validation, in the documented order', () => {
  it('401 without a key, with an unknown key and with an unknown bearer token', async () => {
    const noKey = await rawPost(mock, '/v1/messages', JSON.stringify(request()), { 'content-type': 'application/json', 'anthropic-version': '2023-06-01' });
    expect(noKey.status).toBe(401);
    const body: unknown = await noKey.json();
    expect(body).toMatchObject({ type: 'error', error: { type: 'authentication_error', message: 'x-api-key header is required' } });
    expect(noKey.headers.get('request-id')).toBe((body as { request_id: string }).request_id);
    await expectApiError(() => clientFor(mock, 'wrong').messages.create(request()), Anthropic.AuthenticationError, 401, 'authentication_error', 'Invalid bearer token');
    const wrongApiKey = await rawPost(mock, '/v1/messages', JSON.stringify(request()), { ...VALID_HEADERS, 'x-api-key': 'wrong', authorization: `Bearer ${API_KEY}` });
    expect(await wrongApiKey.json()).toMatchObject({ error: { message: 'invalid x-api-key' } });
  });

  it('400 for a missing or unknown anthropic-version', async () => {
    const { 'anthropic-version': _version, ...noVersion } = VALID_HEADERS;
    const missing = await rawPost(mock, '/v1/messages', JSON.stringify(request()), noVersion);
    expect(missing.status).toBe(400);
    expect(await missing.json()).toMatchObject({ error: { type: 'invalid_request_error', message: 'anthropic-version: header is required' } });
    const unknown = await rawPost(mock, '/v1/messages', JSON.stringify(request()), { ...VALID_HEADERS, 'anthropic-version': '2023-10-01' });
    expect(await unknown.json()).toMatchObject({ error: { message: 'anthropic-version: "2023-10-01" is not a valid version' } });
  });

  it('400 for malformed JSON, after auth', async () => {
    const response = await rawPost(mock, '/v1/messages', '{"model": ', VALID_HEADERS);
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    const unauthenticated = await rawPost(mock, '/v1/messages', '{"model": ', { 'content-type': 'application/json' });
    expect(unauthenticated.status).toBe(401);
  });

  it('400 naming the missing, mistyped or unknown field', async () => {
    const create = (body: Record<string, unknown>) => () => client.messages.create(loose(body));
    const { max_tokens: _max, ...noMaxTokens } = request();
    await expectApiError(create(noMaxTokens), Anthropic.BadRequestError, 400, 'invalid_request_error', 'max_tokens: Field required');
    await expectApiError(create({ ...request(), model: undefined }), Anthropic.BadRequestError, 400, 'invalid_request_error', 'model: Field required');
    await expectApiError(create({ ...request(), max_tokens: 'many' }), Anthropic.BadRequestError, 400, 'invalid_request_error', 'max_tokens: Input should be a valid integer');
    await expectApiError(create({ ...request(), messages: [] }), Anthropic.BadRequestError, 400, 'invalid_request_error');
    await expectApiError(
      create({ ...request(), messages: [{ role: 'system', content: 'x' }] }),
      Anthropic.BadRequestError,
      400,
      'invalid_request_error',
      "messages.0.role: Input should be 'user' or 'assistant'",
    );
    await expectApiError(create({ ...request(), colour: 'blue' }), Anthropic.BadRequestError, 400, 'invalid_request_error', 'colour: Extra inputs are not permitted');
    const createWithTimeout = (body: Anthropic.MessageCreateParamsNonStreaming) => () => client.messages.create(body, { timeout: 60_000 });
    await expectApiError(
      createWithTimeout({ ...request(), max_tokens: 100_000 }),
      Anthropic.BadRequestError,
      400,
      'invalid_request_error',
      `max_tokens: 100000 > 64000, which is the maximum allowed number of output tokens for ${MODEL}`,
    );
  });

  it('400 for sampling fields on 2026-10-21 only', async () => {
    await expectApiError(
      () => client.messages.create(loose({ ...request(), temperature: 1 })),
      Anthropic.BadRequestError,
      400,
      'invalid_request_error',
      'temperature: Extra inputs are not permitted',
    );
    const legacy = await rawPost(mock, '/v1/messages', JSON.stringify({ ...request(), temperature: 1 }), VALID_HEADERS);
    expect(legacy.status).toBe(200);
  });

  it('404 for an unknown model, 400 for a prompt over the context window', async () => {
    await expectApiError(() => client.messages.create({ ...request(), model: 'claude-nonexistent' }), Anthropic.NotFoundError, 404, 'not_found_error', 'model: claude-nonexistent');
    await expectApiError(
      () => client.messages.create(request(), { headers: { 'x-mock-input-tokens': '213462' } }),
      Anthropic.BadRequestError,
      400,
      'invalid_request_error',
      'prompt is too long: 213462 tokens > 200000 maximum',
    );
  });

  it('413 with the Cloudflare body over the body limit', async () => {
    const error = await thrown(() => client.messages.create(request('x'.repeat(BODY_LIMIT_BYTES * 2))));
    expect(error).toBeInstanceOf(Anthropic.ContentTooLargeError);
    const apiError = error as APIError;
    expect(apiError.status).toBe(413);
    expect(apiError.error).toEqual({ error: { type: 'request_too_large', message: 'Request exceeds the maximum size' } });
    expect(mock.stats()).toMatchObject({ requests: 1, messages: 0, byStatus: { '413': 1 }, tokens: { requests: { admitted: 0 } } });
  });

  it('404 not_found_error for an unknown path', async () => {
    const response = await rawPost(mock, '/v1/complete', '{}', VALID_HEADERS);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ type: 'error', error: { type: 'not_found_error' } });
  });

  it('bad requests consume nothing from the limits', async () => {
    const { response: first } = await client.messages.create(request('warm up', 10)).withResponse();
    const remaining = (response: Response) => ['requests', 'input-tokens', 'output-tokens'].map((d) => response.headers.get(`anthropic-ratelimit-${d}-remaining`));
    const before = remaining(first);
    await thrown(() => client.messages.create({ ...request(), model: 'claude-nonexistent' }));
    await thrown(() => client.messages.create(loose({ ...request(), temperature: 1 })));
    const bad = await rawPost(mock, '/v1/messages', '{oops', VALID_HEADERS);
    expect(bad.status).toBe(400);
    expect(bad.headers.get('anthropic-ratelimit-requests-remaining')).toBe(before[0]);
    const stats = mock.stats();
    expect(stats.tokens.requests.admitted).toBe(1);
    expect(stats.byStatus).toMatchObject({ '200': 1, '400': 2, '404': 1 });
  });
});

describe('error statuses through the SDK', () => {
  const cases = [
    { fault: '403', errorClass: Anthropic.PermissionDeniedError, status: 403, type: 'permission_error' },
    { fault: '408', errorClass: Anthropic.RequestTimeoutError, status: 408, type: 'timeout_error' },
    { fault: '409', errorClass: Anthropic.ConflictError, status: 409, type: 'api_error' },
    { fault: '429', errorClass: Anthropic.RateLimitError, status: 429, type: 'rate_limit_error' },
    { fault: '529', errorClass: Anthropic.OverloadedError, status: 529, type: 'overloaded_error' },
    { fault: '500', errorClass: Anthropic.InternalServerError, status: 500, type: 'api_error' },
    { fault: '504', errorClass: Anthropic.GatewayTimeoutError, status: 504, type: 'timeout_error' },
    { fault: 'spend_cap', errorClass: Anthropic.EnforcedSpendLimitReachedError, status: 429, type: 'rate_limit_error' },
    { fault: 'ramp', errorClass: Anthropic.RampLimitExceededError, status: 429, type: 'rate_limit_error' },
  ] as const;

  for (const { fault, errorClass, status, type } of cases) {
    it(`x-mock-fault: ${fault} → ${errorClass.name}`, async () => {
      const error = await expectApiError(() => client.messages.create(request(), { headers: { 'x-mock-fault': fault } }), errorClass, status, type);
      expect(error.headers?.get('request-id')).toBe(error.requestID);
      if (status === 429) expect(error.headers?.get('anthropic-ratelimit-requests-limit')).toBe('1000');
      if (fault === '429' || fault === 'ramp') expect(error.headers?.get('retry-after')).toBe('1');
      if (fault === 'spend_cap') {
        expect(error.errorCode).toBe('enforced_spend_limit_reached');
        expect(error.headers?.get('retry-after')).toBeNull();
        expect(error.headers?.get('x-should-retry')).toBe('false');
      }
      if (fault === '529') expect(error.headers?.get('retry-after')).toBeNull();
    });
  }

  it('an injected fault consumes nothing and is counted', async () => {
    await thrown(() => client.messages.create(request(), { headers: { 'x-mock-fault': '529' } }));
    await thrown(() => client.messages.create(request(), { headers: { 'x-mock-fault': '429' } }));
    const stats = mock.stats();
    expect(stats.faults).toEqual({ '529': 1, '429': 1 });
    expect(stats.rateLimited.injected).toBe(1);
    expect(stats.tokens.requests.admitted).toBe(0);
    expect(stats.byErrorType).toEqual({ overloaded_error: 1, rate_limit_error: 1 });
  });

  it('403, 408 and 409 by schedule: the SDK classes, and the streams never start', async () => {
    mock.setConfig({
      faults: {
        schedule: [
          { nth: 1, fault: '403' },
          { nth: 2, fault: '408' },
          { nth: 3, fault: '409' },
        ],
      },
    });
    await expectApiError(() => client.messages.create(request()), Anthropic.PermissionDeniedError, 403, 'permission_error');
    await expectApiError(() => client.messages.create({ ...request(), stream: true }), Anthropic.RequestTimeoutError, 408, 'timeout_error');
    await expectApiError(() => client.messages.stream(request()).finalMessage(), Anthropic.ConflictError, 409, 'api_error');
    const stats = mock.stats();
    expect(stats.faults).toEqual({ '403': 1, '408': 1, '409': 1 });
    expect(stats.byStatus).toEqual({ '403': 1, '408': 1, '409': 1 });
    expect(stats.tokens.requests.admitted).toBe(0);
    mock.setConfig({ faults: {} });
  });

  it('an unknown x-mock-fault is a 400', async () => {
    await expectApiError(() => client.messages.create(request(), { headers: { 'x-mock-fault': 'gremlins' } }), Anthropic.BadRequestError, 400, 'invalid_request_error');
  });
});
