import { createRng, hashString } from './random.js';

/** Each generated word is one token. */
const WORDS = [
  'the',
  'limit',
  'bucket',
  'token',
  'request',
  'fleet',
  'worker',
  'queue',
  'lease',
  'permit',
  'refill',
  'minute',
  'stream',
  'message',
  'answer',
  'model',
  'burst',
  'window',
  'retry',
  'header',
  'quiet',
  'steady',
  'gate',
  'toll',
] as const;
/** Tokens per `content_block_delta`; real deltas carry a few tokens each. */
export const TOKENS_PER_DELTA = 4;

/** The answer to one request: its text in delta-sized chunks and why it stopped. */
export interface OutputPlan {
  chunks: string[];
  /** Tokens in each chunk. */
  chunkTokens: number[];
  outputTokens: number;
  text: string;
  stopReason: 'end_turn' | 'max_tokens';
}

export interface OutputPlanInput {
  seed: number;
  /** The raw request body: the same body and seed give the same answer. */
  requestText: string;
  maxTokens: number;
  /** `x-mock-output-tokens`: the answer's natural length before `max_tokens` cuts it. */
  forcedTokens: number | undefined;
  tokensMin: number;
  tokensMax: number;
}

/** Plans the answer deterministically; it never has more than `max_tokens` tokens. */
export function planOutput(input: OutputPlanInput): OutputPlan {
  const rng = createRng(hashString(input.requestText, input.seed));
  const naturalTokens = input.forcedTokens ?? input.tokensMin + Math.floor(rng() * (input.tokensMax - input.tokensMin + 1));
  const outputTokens = Math.min(naturalTokens, input.maxTokens);
  const chunks: string[] = [];
  const chunkTokens: number[] = [];
  for (let start = 0; start < outputTokens; start += TOKENS_PER_DELTA) {
    const count = Math.min(TOKENS_PER_DELTA, outputTokens - start);
    let chunk = '';
    for (let i = 0; i < count; i += 1) {
      const word = WORDS[Math.floor(rng() * WORDS.length)] ?? WORDS[0];
      chunk += start + i === 0 ? word : ` ${word}`;
    }
    chunks.push(chunk);
    chunkTokens.push(count);
  }
  return {
    chunks,
    chunkTokens,
    outputTokens,
    text: chunks.join(''),
    stopReason: naturalTokens > input.maxTokens ? 'max_tokens' : 'end_turn',
  };
}
