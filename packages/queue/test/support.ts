import Anthropic from '@anthropic-ai/sdk';
import { Job, Queue } from 'bullmq';

/** A current model the mock knows. */
export const MODEL = 'claude-haiku-4-5';
export const API_KEY = 'test-key';

/** The real SDK aimed at the mock, retries off (the limited client and BullMQ do them). */
export function sdkClient(baseURL: string): Anthropic {
  return new Anthropic({ baseURL, apiKey: API_KEY, maxRetries: 0 });
}

/** A small valid request; `tag` makes its text (and so the mock's answer) differ. */
export function request(tag: string | number, maxTokens = 32): Anthropic.MessageCreateParamsNonStreaming {
  return { model: MODEL, max_tokens: maxTokens, messages: [{ role: 'user', content: `question ${tag}` }] };
}

/** The concatenated text blocks of a message. */
export function textOf(message: Anthropic.Message): string {
  return message.content.map((block) => (block.type === 'text' ? block.text : '')).join('');
}

export { thrown } from '@tollgate/test-support';

/** Resolves when `predicate` holds for an event of `emitter`, or rejects after `timeoutMs` (a test deadline, not an assertion). */
export function nextEvent<T>(on: (listener: (value: T) => void) => () => void, predicate: (value: T) => boolean, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = on((value) => {
      if (!predicate(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Reads one job straight from BullMQ. */
export async function rawJob(queue: Queue, jobId: string): Promise<Job | undefined> {
  return Job.fromId(queue, jobId);
}
