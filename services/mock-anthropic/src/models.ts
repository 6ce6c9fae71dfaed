import type { ModelSpec } from './options.js';

/** `GET /v1/models` page size bounds and default (the API's: 1–1000, 20). */
export const MODELS_PAGE_LIMIT_DEFAULT = 20;
export const MODELS_PAGE_LIMIT_MAX = 1_000;
/** Every mock model claims this release date [INF]. */
const CREATED_AT = '2025-10-01T00:00:00Z';
const DATE_SUFFIX = /^\d{8}$/;

/** A `ModelInfo` as SDK 1.x types it (`resources/models.ts`); capabilities are not modelled. */
export interface ModelInfo {
  type: 'model';
  id: string;
  display_name: string;
  created_at: string;
  capabilities: null;
  deprecated_at: null;
  lifecycle: 'active';
  line: null;
  max_input_tokens: number;
  max_tokens: number;
  retires_at: null;
}

/** `claude-haiku-4-5` → `Claude Haiku 4.5`, `claude-3-5-haiku-20241022` → `Claude 3.5 Haiku`. */
export function displayName(id: string): string {
  const words: string[] = [];
  for (const part of id.split('-')) {
    if (DATE_SUFFIX.test(part)) continue;
    const last = words.at(-1);
    if (/^\d+$/.test(part) && last !== undefined && /^\d+(\.\d+)*$/.test(last)) words[words.length - 1] = `${last}.${part}`;
    else words.push(part.charAt(0).toUpperCase() + part.slice(1));
  }
  return words.join(' ');
}

export function modelInfo(id: string, spec: ModelSpec): ModelInfo {
  return {
    type: 'model',
    id,
    display_name: displayName(id),
    created_at: CREATED_AT,
    capabilities: null,
    deprecated_at: null,
    lifecycle: 'active',
    line: null,
    max_input_tokens: spec.contextWindowTokens,
    max_tokens: spec.maxOutputTokens,
    retires_at: null,
  };
}

export interface ModelsPage {
  data: ModelInfo[];
  has_more: boolean;
  first_id: string | null;
  last_id: string | null;
}

export interface ModelsQuery {
  limit: number;
  afterId: string | undefined;
  beforeId: string | undefined;
}

/** One page of the configured models in their configured order, cut by `after_id` / `before_id` like the API's cursor. */
export function modelsPage(models: Readonly<Record<string, ModelSpec>>, query: ModelsQuery): ModelsPage {
  const all = Object.entries(models).map(([id, spec]) => modelInfo(id, spec));
  let start = 0;
  let end = all.length;
  if (query.afterId !== undefined) start = all.findIndex((model) => model.id === query.afterId) + 1;
  if (query.beforeId !== undefined)
    end = Math.max(
      0,
      all.findIndex((model) => model.id === query.beforeId),
    );
  const window = all.slice(start, end);
  // before_id pages backwards: the page ends right before the cursor
  const data = query.beforeId !== undefined && query.afterId === undefined ? window.slice(-query.limit) : window.slice(0, query.limit);
  return { data, has_more: data.length < window.length, first_id: data[0]?.id ?? null, last_id: data.at(-1)?.id ?? null };
}
