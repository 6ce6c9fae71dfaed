import type Anthropic from '@anthropic-ai/sdk';
import type { Stream } from '@anthropic-ai/sdk/core/streaming';
import { MessageStream } from '@anthropic-ai/sdk/lib/MessageStream';
import type { MessageCreateParamsBase } from '@anthropic-ai/sdk/resources/messages/messages';
import { InvalidArgumentError, InvalidConfigError, PRIORITY_MAX, PRIORITY_MIN, type Limiter } from '@tollgate/limiter';
import { describeZodError } from '@tollgate/limiter/internal';
import { LimitedAPIPromise } from './api-promise.js';
import { LimitedRunner, type CallView, type RequestOptions, type SdkMessages } from './attempts.js';
import { limitAnthropicOptionsSchema, type LimitAnthropicOptions } from './options.js';
import { createRetryingStream } from './retrying-stream.js';
import type { LimitedAnthropicStats } from './stats.js';

type RawEvent = Anthropic.RawMessageStreamEvent;

/** The wrapped `messages` resource: the SDK's signatures and return types. */
export interface LimitedMessages {
  create: SdkMessages['create'];
  stream: SdkMessages['stream'];
  countTokens: SdkMessages['countTokens'];
}

/** A client whose every Messages call takes a fleet-wide permit. See {@link limitAnthropic}. */
export interface LimitedAnthropic {
  readonly messages: LimitedMessages;
  readonly client: Anthropic;
  readonly limiter: Limiter;
  stats(): LimitedAnthropicStats;
  /**
   * The same client taking its permits at another priority (0 first … 9 last). Views share one
   * runner: the adaptive concurrency state, the stats and the header sync are the client's, not the view's.
   */
  withPriority(priority: number): LimitedAnthropic;
  /**
   * The same client taking its permits for `tenant` (the limiter's group: fair share between tenants in a limiter
   * with groups, DESIGN §9), at this view's priority; `null`: for no tenant. Views share one runner.
   */
  withTenant(tenant: string | null): LimitedAnthropic;
}

/**
 * Wraps an Anthropic client so that every `messages.create` / `messages.stream` call takes a fleet-wide permit from
 * `limiter` first: one request, the estimated input tokens and `max_tokens` output tokens (only the dimensions the
 * limiter has rates for). The permit is settled with the real usage when the call (or the stream) ends. Retries are
 * done here, each with a fresh permit; build the client with `maxRetries: 0`.
 * `countTokens` passes straight through (it uses none of the Messages limits).
 * @throws {@link InvalidConfigError} when an option is invalid.
 * @example
 * const anthropic = limitAnthropic(new Anthropic({ maxRetries: 0 }), limiter);
 * const message = await anthropic.messages.create({ model, max_tokens: 1024, messages });
 */
export function limitAnthropic(client: Anthropic, limiter: Limiter, options: LimitAnthropicOptions = {}): LimitedAnthropic {
  const parsed = limitAnthropicOptionsSchema.safeParse(options);
  if (!parsed.success) throw new InvalidConfigError(`invalid limitAnthropic options: ${describeZodError(parsed.error, options)}`, { cause: parsed.error });
  const runner = new LimitedRunner(client, limiter, parsed.data);
  return limitedView(runner, { priority: parsed.data.priority, tenant: parsed.data.tenant });
}

const TENANT_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** The SDK-shaped surface over one runner, taking its permits at the view's priority, for its tenant. */
function limitedView(runner: LimitedRunner, view: CallView): LimitedAnthropic {
  const { client, limiter } = runner;
  function create(params: Anthropic.MessageCreateParams, requestOptions?: RequestOptions): LimitedAPIPromise<Anthropic.Message> | LimitedAPIPromise<Stream<RawEvent>> {
    return params.stream === true
      ? LimitedAPIPromise.from(createRetryingStream(runner, params, requestOptions, view))
      : LimitedAPIPromise.from(runner.createMessage(params, requestOptions, view));
  }
  // The SDK types these as APIPromise; LimitedAPIPromise has its public surface (await, withResponse, asResponse).
  const limitedCreate = create as unknown as SdkMessages['create'];
  // MessageStream only calls `create(…).withResponse()` on what it is given, so it runs over the limited create.
  const limitedResource = { create: limitedCreate } as unknown as SdkMessages;
  const stream: SdkMessages['stream'] = (body, requestOptions) =>
    // the SDK's own stream() makes the same cast: its parse-aware params are a MessageCreateParamsBase at run time
    MessageStream.createMessage(limitedResource, body as MessageCreateParamsBase, requestOptions, { logger: client.logger, client });
  const countTokens: SdkMessages['countTokens'] = (params, requestOptions) => client.messages.countTokens(params, requestOptions);
  return {
    messages: { create: limitedCreate, stream, countTokens },
    client,
    limiter,
    stats: () => runner.stats(),
    withPriority: (other) => {
      if (!Number.isInteger(other) || other < PRIORITY_MIN || other > PRIORITY_MAX) {
        throw new InvalidArgumentError('priority', other, `an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX} (withPriority)`);
      }
      return limitedView(runner, { ...view, priority: other });
    },
    withTenant: (tenant) => {
      if (tenant !== null && (typeof tenant !== 'string' || !TENANT_PATTERN.test(tenant))) {
        throw new InvalidArgumentError('tenant', tenant, 'a tenant name: letters, digits and ._-, 1 to 64 characters (withTenant)');
      }
      return limitedView(runner, { ...view, tenant: tenant ?? undefined });
    },
  };
}
