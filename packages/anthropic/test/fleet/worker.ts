/**
 * One fleet process for the cross-process tests: builds a limiter and a limited client, prints `ready`, waits for
 * `go` on stdin, makes its calls with `parallel` callers, then prints one JSON line with its results and exits.
 * Run as `node --conditions=tollgate-source --import tsx worker.ts` with the config in TOLLGATE_WORKER_CONFIG.
 */
import { createInterface } from 'node:readline';
import Anthropic from '@anthropic-ai/sdk';
import { createLimiter } from '@tollgate/limiter';
import { toError } from '@tollgate/limiter/internal';
import { pino } from 'pino';
import { limitAnthropic } from '../../src/index.js';
import { RESULT_PREFIX, workerConfigSchema, type CallShape, type WorkerResult } from './protocol.js';

const config = workerConfigSchema.parse(JSON.parse(process.env.TOLLGATE_WORKER_CONFIG ?? '{}'));
const limiter = createLimiter({ redis: config.redisUrl, name: config.limiterName, ...config.limiter });
await limiter.ready();
// what the fleet tests read off: when each pause took effect, and when the permits that met a 429 were granted
const grantedAtMs = new Map<string, number>();
const pausedAtMs: number[] = [];
const rateLimitedGrantedAtMs: number[] = [];
limiter.on('granted', (event) => grantedAtMs.set(event.permitId, event.grantedAtMs));
limiter.on('paused', (event) => pausedAtMs.push(event.atMs));
const failures = {
  write(line: string): void {
    const record = JSON.parse(line) as { failure?: string; permitId?: string };
    if (record.failure === 'rate_limited' && record.permitId !== undefined) rateLimitedGrantedAtMs.push(grantedAtMs.get(record.permitId) ?? Number.NaN);
  },
};
const logger = pino({ level: 'warn' }, failures);
const anthropic = limitAnthropic(new Anthropic({ baseURL: config.mockUrl, apiKey: config.apiKey, maxRetries: 0 }), limiter, { ...config.wrapper, logger });

async function call(index: number, shape: CallShape): Promise<void> {
  const params = {
    model: config.model,
    max_tokens: shape.maxTokens,
    messages: [{ role: 'user' as const, content: `${index} `.padEnd(shape.promptChars, 'x') }],
  };
  const options = shape.outputTokens === undefined ? {} : { headers: { 'x-mock-output-tokens': String(shape.outputTokens) } };
  const kind = config.kinds[index % config.kinds.length];
  if (kind === 'create') {
    await anthropic.messages.create(params, options);
  } else if (kind === 'stream') {
    const stream = await anthropic.messages.create({ ...params, stream: true }, options);
    for await (const _event of stream) {
      // read to the end
    }
  } else {
    await anthropic.messages.stream(params, options).finalMessage();
  }
}

for (let index = 0; index < config.warmUpCalls; index += 1) await call(index, config.shapes[0] as CallShape);
const lines = createInterface({ input: process.stdin });
process.stdout.write('ready\n');
await new Promise<void>((resolve) => lines.once('line', () => resolve()));

let next = 0;
let succeeded = 0;
const errors: string[] = [];
async function caller(): Promise<void> {
  for (let index = next++; index < config.calls; index = next++) {
    const shape = config.shapes[(index + config.shapeOffset) % config.shapes.length];
    if (shape === undefined) throw new Error('no call shapes');
    try {
      await call(index, shape);
      succeeded += 1;
    } catch (error) {
      errors.push(`${toError(error).name}: ${toError(error).message}`);
    }
  }
}
await Promise.all(Array.from({ length: config.parallel }, () => caller()));
const result: WorkerResult = { succeeded, errors, stats: anthropic.stats(), pausedAtMs, rateLimitedGrantedAtMs };
process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
lines.close();
await limiter.close();
