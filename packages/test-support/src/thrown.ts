/**
 * Runs `call`, which must reject, and returns what it threw; fails the test when it resolves. Lets a test inspect
 * the error itself (its class, status, fields) where `expect(...).rejects` only matches.
 * @example
 * const error = await thrown(() => client.messages.create(params));
 * expect(error).toBeInstanceOf(Anthropic.RateLimitError);
 */
export async function thrown(call: () => Promise<unknown>): Promise<unknown> {
  try {
    await call();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to throw');
}
