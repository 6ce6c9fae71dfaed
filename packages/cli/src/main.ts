import { runCli } from './cli.js';

/** The process entry: one command, its exit code; SIGINT/SIGTERM end a `--watch` cleanly. */
const stop = new AbortController();
process.once('SIGINT', () => stop.abort());
process.once('SIGTERM', () => stop.abort());
const code = await runCli(process.argv.slice(2), {
  out: (text) => process.stdout.write(`${text}\n`),
  err: (text) => process.stderr.write(`${text}\n`),
  env: process.env,
  signal: stop.signal,
});
process.exitCode = code;
// every connection is closed; anything left (a timer of a library) must not keep the shell waiting
setTimeout(() => process.exit(code), 100).unref();
