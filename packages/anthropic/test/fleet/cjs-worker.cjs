// A CommonJS fleet process (issue 12, case 15): a CommonJS app that makes its client from the SDK's CommonJS build
// (`require`), as every CJS-compiled TypeScript project does. It speaks worker.ts's protocol (ready, go, one result
// line; config in TOLLGATE_WORKER_CONFIG) for the `create` and `stream` kinds.
// Run as `node --conditions=tollgate-source --import tsx cjs-worker.cjs`.
//
// The Tollgate packages are ESM: Node loads them as ESM for a CommonJS caller too (`require(esm)`), so they import the
// SDK's ESM build while the caller's client throws the CommonJS build's errors. They are loaded with import() here,
// because under tsx a require() of their TypeScript sources would compile them to CommonJS, and their SDK import
// would then be the CommonJS build as well, hiding the very mismatch this process is for. (The packed-tarball test
// require()s the built packages without tsx.)
'use strict';
const { createInterface } = require('node:readline');
const Anthropic = require('@anthropic-ai/sdk');

const RESULT_PREFIX = 'result ';

async function main() {
  const { createLimiter } = await import('@tollgate/limiter');
  const { limitAnthropic } = await import('@tollgate/anthropic');
  const { toError } = await import('@tollgate/limiter/internal');
  const config = JSON.parse(process.env.TOLLGATE_WORKER_CONFIG ?? '{}');
  const limiter = createLimiter({ redis: config.redisUrl, name: config.limiterName, ...config.limiter });
  await limiter.ready();
  const client = new Anthropic({ baseURL: config.mockUrl, apiKey: config.apiKey, maxRetries: 0 });
  const anthropic = limitAnthropic(client, limiter, config.wrapper ?? {});

  async function call(index, shape) {
    const params = { model: config.model, max_tokens: shape.maxTokens, messages: [{ role: 'user', content: `${index} `.padEnd(shape.promptChars, 'x') }] };
    const kind = config.kinds[index % config.kinds.length];
    if (kind === 'create') {
      await anthropic.messages.create(params);
    } else if (kind === 'stream') {
      const stream = await anthropic.messages.create({ ...params, stream: true });
      for await (const _event of stream) {
        // read to the end
      }
    } else {
      throw new Error(`cjs-worker: kind ${kind} not supported`);
    }
  }

  const lines = createInterface({ input: process.stdin });
  process.stdout.write('ready\n');
  await new Promise((resolve) => lines.once('line', () => resolve()));

  let next = 0;
  let succeeded = 0;
  const errors = [];
  async function caller() {
    for (let index = next++; index < config.calls; index = next++) {
      const shape = config.shapes[(index + (config.shapeOffset ?? 0)) % config.shapes.length];
      try {
        await call(index, shape);
        succeeded += 1;
      } catch (error) {
        // the caller's own SDK classes still apply to what the wrapper rethrows
        const own = error instanceof Anthropic.APIError ? 'own-class ' : '';
        errors.push(`${own}${toError(error).name}: ${toError(error).message}`);
      }
    }
  }
  await Promise.all(Array.from({ length: config.parallel }, () => caller()));
  const result = { succeeded, errors, stats: anthropic.stats(), pausedAtMs: [], rateLimitedGrantedAtMs: [] };
  process.stdout.write(`${RESULT_PREFIX}${JSON.stringify(result)}\n`);
  lines.close();
  await limiter.close();
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? String(error)}\n`);
  process.exit(1);
});
