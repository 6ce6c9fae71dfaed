import type Anthropic from '@anthropic-ai/sdk';

/** The local estimate's ratio: one token per 4 characters of text (the mock's estimator uses the same). */
export const CHARS_PER_TOKEN = 4;
/** String fields that are structure, not text the model reads: not counted. */
const STRUCTURAL_KEYS = new Set(['type', 'role', 'cache_control', 'media_type', 'tool_use_id', 'id']);

export interface EstimateFigures {
  /** Tokens per image block. */
  imageTokens: number;
  /** Tokens per document block. */
  documentTokens: number;
}

interface Tally {
  chars: number;
  fixedTokens: number;
}

function walk(value: unknown, figures: EstimateFigures, tally: Tally): void {
  if (typeof value === 'string') {
    tally.chars += value.length;
    return;
  }
  if (Array.isArray(value)) {
    for (const item of value) walk(item, figures, tally);
    return;
  }
  if (value === null || typeof value !== 'object') return;
  const block = value as Record<string, unknown>;
  // Images and documents are a fixed figure each: their base64 bytes say little about their tokens.
  if (block.type === 'image') {
    tally.fixedTokens += figures.imageTokens;
    return;
  }
  if (block.type === 'document') {
    tally.fixedTokens += figures.documentTokens;
    return;
  }
  for (const [key, item] of Object.entries(block)) if (!STRUCTURAL_KEYS.has(key)) walk(item, figures, tally);
}

/**
 * The documented local estimate of a request's input tokens:
 * `ceil(chars / 4) + imageTokens · images + documentTokens · documents`, where `chars` is the length of every string
 * in `system`, `messages` and `tools` except structural fields (`type`, `role`, `id`, `tool_use_id`, `media_type`,
 * `cache_control`). Cheap (no I/O); the permit is settled with the real usage afterwards, so an error here only
 * moves tokens between reservation and refund.
 */
export function estimateInputTokens(params: Pick<Anthropic.MessageCreateParams, 'messages' | 'system' | 'tools'>, figures: EstimateFigures): number {
  const tally: Tally = { chars: 0, fixedTokens: 0 };
  walk(params.system, figures, tally);
  walk(params.messages, figures, tally);
  walk(params.tools, figures, tally);
  return Math.ceil(tally.chars / CHARS_PER_TOKEN) + tally.fixedTokens;
}
