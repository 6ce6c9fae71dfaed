import type Anthropic from '@anthropic-ai/sdk';
import { CHARS_PER_TOKEN } from './estimate.js';

/** Input tokens that count toward ITPM: uncached input plus cache writes (anthropic-api.md §3). */
export function countedInputTokens(usage: { input_tokens: number | null; cache_creation_input_tokens?: number | null }): number | undefined {
  if (usage.input_tokens === null) return undefined;
  return usage.input_tokens + (usage.cache_creation_input_tokens ?? 0);
}

/** What a call used, as far as we know: absent fields keep the reservation when settled. */
export interface KnownUsage {
  inputTokens?: number;
  outputTokens?: number;
}

/**
 * Follows a stream's events to know what it used, also when it ends early. Input comes from `message_start` (and
 * `message_delta`); output from the last `message_delta` (cumulative, exact). Without one (the consumer stopped, an
 * error cut it) output is the larger of the last reported figure and ceil(chars / 4) of the text delivered.
 */
export class StreamUsage {
  #inputTokens: number | undefined;
  #reportedOutputTokens = 0;
  #final = false;
  #deltaChars = 0;
  /** True once `message_stop` arrived. */
  stopped = false;

  add(event: Anthropic.RawMessageStreamEvent): void {
    switch (event.type) {
      case 'message_start':
        this.#inputTokens = countedInputTokens(event.message.usage);
        this.#reportedOutputTokens = event.message.usage.output_tokens;
        break;
      case 'message_delta':
        this.#inputTokens = countedInputTokens(event.usage) ?? this.#inputTokens;
        this.#reportedOutputTokens = event.usage.output_tokens;
        this.#final = true;
        break;
      case 'content_block_delta':
        this.#deltaChars += deltaChars(event.delta);
        break;
      case 'message_stop':
        this.stopped = true;
        break;
      default:
        break;
    }
  }

  used(): KnownUsage {
    const outputTokens = this.#final ? this.#reportedOutputTokens : Math.max(this.#reportedOutputTokens, Math.ceil(this.#deltaChars / CHARS_PER_TOKEN));
    return this.#inputTokens === undefined ? { outputTokens } : { inputTokens: this.#inputTokens, outputTokens };
  }
}

function deltaChars(delta: Anthropic.RawContentBlockDeltaEvent['delta']): number {
  switch (delta.type) {
    case 'text_delta':
      return delta.text.length;
    case 'input_json_delta':
      return delta.partial_json.length;
    case 'thinking_delta':
      return delta.thinking.length;
    default:
      return 0;
  }
}

/** The events that put model output in the caller's hands; before the first of them a failed stream may be retried. */
export function deliversOutput(event: Anthropic.RawMessageStreamEvent): boolean {
  return event.type === 'content_block_delta' || event.type === 'message_delta' || event.type === 'message_stop';
}
