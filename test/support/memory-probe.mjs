/**
 * Preloaded into a service under test (`node --expose-gc --import <this file>`), never into production: on SIGUSR2 it
 * collects garbage and prints one JSON line, `{"event":"memory",…}` with `process.memoryUsage()`, so that a test
 * can measure what the process retains rather than its RSS (which the allocator and the machine's load move).
 */
import process from 'node:process';

// plain JavaScript: it is preloaded into a service run from its build (`npm test`) as well as through tsx
const gc = globalThis.gc;
process.on('SIGUSR2', () => {
  gc?.();
  gc?.(); // a second pass frees what the first one's finalizers let go
  const { heapUsed, external, arrayBuffers, rss } = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ event: 'memory', gc: gc !== undefined, heapUsed, external, arrayBuffers, rss })}\n`);
});
