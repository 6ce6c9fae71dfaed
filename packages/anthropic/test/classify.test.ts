import { AnthropicError } from '@anthropic-ai/sdk';
import { describe, expect, it } from 'vitest';
import { classifyFailure, isNetworkError } from '../src/index.js';

/** The error Node's fetch (undici) throws when a response body's socket is reset. */
function resetBodyError(): TypeError {
  const socketError = Object.assign(new Error('other side closed'), { code: 'UND_ERR_SOCKET' });
  return new TypeError('terminated', { cause: socketError });
}

describe('classifyFailure: connection resets that do not come as APIConnectionError', () => {
  it('retries the raw fetch error a mid-stream reset throws from create({ stream: true })', () => {
    expect(isNetworkError(resetBodyError())).toBe(true);
    expect(classifyFailure(resetBodyError(), false)).toEqual({ kind: 'transient', serverWaitMs: undefined });
  });

  it('retries the AnthropicError with the reset as its cause that messages.stream() throws', () => {
    const wrapped = new AnthropicError('stream failed', { cause: resetBodyError() });
    expect(classifyFailure(wrapped, false)).toEqual({ kind: 'transient', serverWaitMs: undefined });
    const econnreset = new AnthropicError('socket hang up', { cause: Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }) });
    expect(classifyFailure(econnreset, false)).toEqual({ kind: 'transient', serverWaitMs: undefined });
  });

  it('keeps other unknown errors final', () => {
    expect(isNetworkError(new TypeError('x is not a function'))).toBe(false);
    expect(classifyFailure(new Error('boom'), false)).toEqual({ kind: 'fatal' });
    expect(classifyFailure(new TypeError('x is not a function'), false)).toEqual({ kind: 'fatal' });
  });
});
