import Anthropic from '@anthropic-ai/sdk';
import type { APIPromise } from '@anthropic-ai/sdk';
import type { Stream } from '@anthropic-ai/sdk/core/streaming';
import type { MessageStream } from '@anthropic-ai/sdk/lib/MessageStream';
import type { Limiter } from '@tollgate/limiter';
import { describe, expectTypeOf, it } from 'vitest';
import { limitAnthropic } from '../src/index.js';
import { MODEL } from './support.js';

type Limited = ReturnType<typeof limitAnthropic>;
const params = { model: MODEL, max_tokens: 16, messages: [{ role: 'user' as const, content: 'hi' }] };

describe('types are the SDK’s', () => {
  it('messages.create, messages.stream and messages.countTokens have the SDK signatures', () => {
    expectTypeOf<Limited['messages']['create']>().toEqualTypeOf<Anthropic['messages']['create']>();
    expectTypeOf<Limited['messages']['stream']>().toEqualTypeOf<Anthropic['messages']['stream']>();
    expectTypeOf<Limited['messages']['countTokens']>().toEqualTypeOf<Anthropic['messages']['countTokens']>();
  });

  it('each overload returns what the SDK returns', () => {
    // Type-level only: these functions are never called.
    const nonStreaming = (limited: Limited) => limited.messages.create(params);
    const streaming = (limited: Limited) => limited.messages.create({ ...params, stream: true });
    const stream = (limited: Limited) => limited.messages.stream(params);
    expectTypeOf(nonStreaming).returns.toEqualTypeOf<APIPromise<Anthropic.Message>>();
    expectTypeOf(nonStreaming).returns.resolves.toExtend<Anthropic.Message>();
    expectTypeOf(streaming).returns.toEqualTypeOf<APIPromise<Stream<Anthropic.RawMessageStreamEvent>>>();
    expectTypeOf(stream).returns.toEqualTypeOf<MessageStream<null>>();
    expectTypeOf(limitAnthropic).parameters.toEqualTypeOf<[Anthropic, Limiter, Parameters<typeof limitAnthropic>[2]?]>();
  });
});
