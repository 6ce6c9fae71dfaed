// "Without Tollgate": a worker that knows the account's concurrency limit but can only enforce it inside its own
// process (a local semaphore: BullMQ's per-worker concurrency), and relies on the SDK's own retries for 429s.
import Anthropic from '@anthropic-ai/sdk';
import { Worker } from 'bullmq';

const env = process.env;
const queue = env.DEMO_QUEUE ?? 'naive';
const localLimit = Number(env.DEMO_LOCAL_CONCURRENCY ?? '5');
const client = new Anthropic({ baseURL: env.ANTHROPIC_BASE_URL, apiKey: env.ANTHROPIC_API_KEY ?? 'demo', maxRetries: 2 }); // the SDK default
const worker = new Worker(queue, async (job) => client.messages.create((job.data as { params: Anthropic.MessageCreateParamsNonStreaming }).params), {
  connection: { url: env.REDIS_URL ?? 'redis://127.0.0.1:6379', maxRetriesPerRequest: null },
  prefix: env.DEMO_PREFIX ?? 'bull',
  concurrency: localLimit,
});
worker.on('error', () => {}); // connection errors: BullMQ reconnects by itself
await worker.waitUntilReady();
process.stdout.write(`${JSON.stringify({ event: 'ready', service: 'naive-worker', pid: process.pid })}\n`);
const stop = () => void worker.close().then(() => process.exit(0));
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
