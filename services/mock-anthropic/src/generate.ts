import type { FastifyReply, FastifyRequest } from 'fastify';
import { delay } from './delay.js';
import { OVERLOADED } from './errors.js';
import type { KeyLimits, PoolBuckets } from './limits.js';
import type { FaultKind } from './options.js';
import { randomId, sampleDelayMs } from './random.js';
import type { MockState } from './state.js';
import type { Metered } from './stats.js';
import type { OutputPlan } from './text.js';
import type { InputUsage } from './tokens.js';
import type { ToolUse } from './tool-use.js';

/** One admitted request being answered; `producedTokens` grows as output is generated. */
export interface Generation {
  state: MockState;
  key: KeyLimits;
  /** The pool of the request's model: its buckets are charged. */
  pool: PoolBuckets;
  metered: Metered;
  reply: FastifyReply;
  request: FastifyRequest;
  requestId: string;
  /** Response headers as of now (the rate-limit headers change while the request waits). */
  headers: () => Record<string, string>;
  /** Aborts when the client goes away or the server closes. */
  signal: AbortSignal;
  modelId: string;
  input: InputUsage;
  plan: OutputPlan;
  fault: FaultKind | undefined;
  /** The answer is this tool call instead of text (the request forced a tool). */
  toolUse: ToolUse | undefined;
  producedTokens: number;
}

type StopReason = OutputPlan['stopReason'] | 'tool_use';

/** A finished tool call stops with `tool_use`; one cut by `max_tokens` keeps `max_tokens`. */
function stopReason(g: Generation): StopReason {
  return g.toolUse !== undefined && g.plan.stopReason === 'end_turn' ? 'tool_use' : g.plan.stopReason;
}

/** The tool call's input JSON in `parts` pieces, as `input_json_delta`s carry it. */
function jsonPieces(input: unknown, parts: number): string[] {
  const json = JSON.stringify(input);
  const size = Math.ceil(json.length / Math.max(1, parts));
  const pieces: string[] = [];
  for (let i = 0; i < Math.max(1, parts); i += 1) pieces.push(json.slice(i * size, (i + 1) * size));
  return pieces;
}

function usage(g: Generation, outputTokens: number): Record<string, unknown> {
  return {
    input_tokens: g.input.inputTokens,
    cache_creation_input_tokens: g.input.cacheWriteTokens,
    cache_read_input_tokens: g.input.cacheReadTokens,
    cache_creation: { ephemeral_5m_input_tokens: g.input.cacheWriteTokens, ephemeral_1h_input_tokens: 0 },
    output_tokens: outputTokens,
    service_tier: 'standard',
    inference_geo: 'not_available',
  };
}

/** The Message of anthropic-api.md §1.2. */
function message(g: Generation, id: string, content: unknown[], stopReason: StopReason | null, outputTokens: number): Record<string, unknown> {
  return {
    id,
    type: 'message',
    role: 'assistant',
    model: g.modelId,
    content,
    stop_reason: stopReason,
    stop_sequence: null,
    stop_details: null,
    container: null,
    diagnostics: null,
    usage: usage(g, outputTokens),
  };
}

/** Slow-headers fault, then the time to first token. False when aborted. */
async function waitForFirstToken(g: Generation): Promise<boolean> {
  const { config } = g.state;
  if (g.fault === 'slow_headers' && !(await delay(config.faults.slowHeadersMs, g.signal))) return false;
  return delay(sampleDelayMs(config.latency.timeToFirstTokenMs, g.state.latencyRng), g.signal);
}

/** Generates chunk `index`: waits its per-token time, then counts (and in `actual` mode charges) its tokens. */
async function produce(g: Generation, index: number, beforeWait: () => void): Promise<boolean> {
  const { state } = g;
  const tokens = g.plan.chunkTokens[index] ?? 0;
  const perTokenMs = sampleDelayMs(state.config.latency.perTokenMs, state.latencyRng);
  if (perTokenMs > 0) {
    beforeWait();
    if (!(await delay(perTokenMs * tokens, g.signal))) return false;
  }
  const nowMs = state.nowMs();
  g.producedTokens += tokens;
  state.stats.settled('output_tokens', tokens, nowMs, g.metered);
  if (g.key.limits.otpmMode === 'actual') {
    const balance = g.pool.buckets.output_tokens?.charge(nowMs, tokens);
    if (balance !== undefined) state.stats.balance('output_tokens', balance, g.metered);
  }
  return true;
}

function abandon(g: Generation): void {
  if (!g.reply.sent) g.reply.hijack(); // the client or the server is gone: nothing left to send
}

function destroySocket(g: Generation): void {
  g.state.stats.answered('reset');
  g.request.raw.socket.destroy();
}

/** A non-streaming answer: headers only when the whole body is ready. */
export async function jsonAnswer(g: Generation): Promise<void> {
  if (g.fault === 'stall') {
    g.reply.hijack();
    if (await delay(g.state.config.faults.stallMs, g.signal)) destroySocket(g);
    return;
  }
  if (!(await waitForFirstToken(g))) return abandon(g);
  for (let i = 0; i < g.plan.chunks.length; i += 1) {
    if (!(await produce(g, i, () => undefined))) return abandon(g);
  }
  const content = g.toolUse === undefined ? { type: 'text', text: g.plan.text } : { type: 'tool_use', ...g.toolUse };
  const body = message(g, randomId('msg_'), [content], stopReason(g), g.producedTokens);
  g.state.stats.answered(200);
  await g.reply.code(200).headers(g.headers()).type('application/json').send(JSON.stringify(body));
}

/** An SSE answer in the documented order; mid-stream faults strike halfway through the deltas. */
export async function streamAnswer(g: Generation): Promise<void> {
  if (!(await waitForFirstToken(g))) return abandon(g);
  g.reply.hijack();
  const res = g.reply.raw;
  res.writeHead(200, { ...g.headers(), 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache' });
  g.state.stats.answered(200);
  let pending = '';
  const send = (event: string, data: Record<string, unknown>) => {
    pending += `event: ${event}\ndata: ${JSON.stringify({ type: event, ...data })}\n\n`;
  };
  const flush = () => {
    if (pending !== '' && !res.destroyed) res.write(pending);
    pending = '';
  };
  send('message_start', { message: message(g, randomId('msg_'), [], null, 1) });
  const tool = g.toolUse;
  send('content_block_start', { index: 0, content_block: tool === undefined ? { type: 'text', text: '' } : { type: 'tool_use', id: tool.id, name: tool.name, input: {} } });
  send('ping', {});
  const { chunks } = g.plan;
  const pieces = tool === undefined ? [] : jsonPieces(tool.input, chunks.length);
  const faultAtChunk = Math.floor(chunks.length / 2);
  for (let i = 0; i <= chunks.length; i += 1) {
    if (i === faultAtChunk && (await strikeMidStream(g, send, flush))) return;
    const chunk = chunks[i];
    if (chunk === undefined) break;
    if (!(await produce(g, i, flush))) return;
    const delta = tool === undefined ? { type: 'text_delta', text: chunk } : { type: 'input_json_delta', partial_json: pieces[i] ?? '' };
    send('content_block_delta', { index: 0, delta });
  }
  if (tool !== undefined && chunks.length === 0) send('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: pieces[0] ?? '' } });
  send('content_block_stop', { index: 0 });
  const { cacheWriteTokens, cacheReadTokens, inputTokens } = g.input;
  send('message_delta', {
    delta: { stop_reason: stopReason(g), stop_sequence: null, stop_details: null },
    usage: {
      input_tokens: inputTokens,
      cache_creation_input_tokens: cacheWriteTokens,
      cache_read_input_tokens: cacheReadTokens,
      output_tokens: g.producedTokens,
    },
  });
  send('message_stop', {});
  flush();
  res.end();
}

/** Applies a mid-stream fault, if any; true when the stream is over. */
async function strikeMidStream(g: Generation, send: (event: string, data: Record<string, unknown>) => void, flush: () => void): Promise<boolean> {
  switch (g.fault) {
    case 'mid_stream_error':
      send('error', { error: { type: OVERLOADED.type, message: OVERLOADED.message } });
      flush();
      g.state.stats.errorEvent(OVERLOADED.type);
      g.reply.raw.end();
      return true;
    case 'reset_mid_stream':
      flush();
      // Let the events so far reach the client, so the reset lands after the headers.
      await new Promise<void>((resolve) => g.reply.raw.write('', () => resolve()));
      destroySocket(g);
      return true;
    case 'stall':
      flush();
      if (await delay(g.state.config.faults.stallMs, g.signal)) destroySocket(g);
      return true;
    default:
      return false;
  }
}
