import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Writable } from 'node:stream';
import { Cluster, type Redis } from 'ioredis';

/**
 * The scripts, one `.lua` file each under lua/, loaded as one Redis Functions library (Redis ≥ 7.0).
 * A function is defined once, when the library loads, so a call pays for no prelude and no closures;
 * see docs/adr/0002-redis-functions.md. The library and function names carry a hash of the code,
 * so a changed contract never replaces the functions an older worker still calls.
 */
const SCRIPT_FILES = {
  acquire: 'acquire.v2.lua',
  release: 'release.v2.lua',
  cancel: 'cancel.v2.lua',
  pump: 'pump.v2.lua',
  heartbeat: 'heartbeat.v2.lua',
  pause: 'pause.v2.lua',
  resume: 'resume.v1.lua',
  observe: 'observe.v2.lua',
  set_concurrency: 'set-concurrency.v2.lua',
  snapshot: 'snapshot.v2.lua',
  configure: 'configure.v2.lua',
} as const;

export type ScriptName = keyof typeof SCRIPT_FILES;
export type RedisLike = Redis | Cluster;
/** A raw script reply: nested arrays of strings and integers. Read only by the decoders in scripts.ts. */
export type RawReply = ReadonlyArray<string | number | RawReply>;

const HASH_PLACEHOLDER = /\{\{hash\}\}/g;
const LIBRARY_HASH_CHARS = 12;

function readLua(file: string): string {
  return readFileSync(new URL(`../lua/${file}`, import.meta.url), 'utf8');
}

/** The contract version of a function: the `v<N>` of its file name. */
function scriptVersion(script: ScriptName): string {
  const match = /\.(v\d+)\.lua$/.exec(SCRIPT_FILES[script]);
  assert(match?.[1] !== undefined, `no version in ${SCRIPT_FILES[script]}`);
  return match[1];
}

interface Library {
  name: string;
  code: string;
  functionName(script: ScriptName): string;
}

let library: Library | undefined;

/** Assembles prelude + scripts into one library; its hash names it and its functions. */
export function tollgateLibrary(): Library {
  if (library) return library;
  const body = [readLua('prelude.lua'), ...Object.values(SCRIPT_FILES).map(readLua)].join('\n');
  const hash = createHash('sha1').update(body).digest('hex').slice(0, LIBRARY_HASH_CHARS);
  const name = `tollgate_${hash}`;
  library = {
    name,
    code: `#!lua name=${name}\n${body.replace(HASH_PLACEHOLDER, hash)}`,
    functionName: (script) => `tollgate_${script}_${scriptVersion(script)}_${hash}`,
  };
  return library;
}

let names: Record<ScriptName, string> | undefined;

/** Each function's name in the library, computed once (not per call). */
function functionNames(): Record<ScriptName, string> {
  const { functionName } = tollgateLibrary();
  names ??= Object.fromEntries((Object.keys(SCRIPT_FILES) as ScriptName[]).map((script) => [script, functionName(script)])) as Record<ScriptName, string>;
  return names;
}

/** Loads the library on every primary that may hold a limiter's keys (all of them, on a Cluster). */
export async function loadLibrary(redis: RedisLike): Promise<void> {
  const { code } = tollgateLibrary();
  const nodes: Redis[] = redis instanceof Cluster ? redis.nodes('master') : [redis];
  await Promise.all(
    nodes.map((node) =>
      node.call('FUNCTION', 'LOAD', code).catch((error: unknown) => {
        if (error instanceof Error && /already exists/i.test(error.message)) return; // loaded by a peer
        throw error;
      }),
    ),
  );
}

/**
 * `fcall` with the keys and arguments as two arrays: ioredis flattens a command's arguments one level
 * (`new Command` does `args.flat()`) before it routes (the Cluster slot of the first key) or queues
 * it, so this is the same command as `fcall(name, numKeys, ...keys, ...args)` without two spread copies.
 */
type FcallArrays = (this: RedisLike, name: string, numKeys: string, keys: readonly string[], args: ReadonlyArray<string | number>) => Promise<unknown>;

function sendFcall(redis: RedisLike, name: string, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<RawReply> {
  if (!(redis instanceof Cluster)) corkUntilTickEnd(redis.stream);
  return (redis.fcall as unknown as FcallArrays).call(redis, name, String(keys.length), keys, args) as Promise<RawReply>;
}

/** Connections whose writes wait for the end of this tick (see {@link corkUntilTickEnd}). */
const corked = new Set<Writable>();

function uncorkAll(): void {
  for (const stream of corked) stream.uncork();
  corked.clear();
}

/**
 * Holds the connection's writes until the end of the current tick (its promise jobs included), so that
 * the calls one event starts (a reply that resolves several callers, each sending its next call) leave
 * in one write system call instead of one each: on a contended limiter that write was the largest
 * single cost of the client (issue 18). Same bytes, same order, same tick: nothing waits for I/O.
 */
function corkUntilTickEnd(stream: Writable | undefined): void {
  if (stream === undefined || corked.has(stream)) return;
  if (corked.size === 0) process.nextTick(uncorkAll);
  stream.cork();
  corked.add(stream);
}

/**
 * Calls one function: one FCALL. `keys`: every key the function declares (plus configure's database
 * marker). When Redis answers that the function is missing (a restart without persistence, a
 * failover, a new Cluster node), the library is loaded again and the call sent once more.
 */
export function callFunction(redis: RedisLike, script: ScriptName, keys: readonly string[], args: ReadonlyArray<string | number>): Promise<RawReply> {
  const name = functionNames()[script];
  return sendFcall(redis, name, keys, args).catch(async (error: unknown) => {
    if (!(error instanceof Error) || !/function not found/i.test(error.message)) throw error;
    await loadLibrary(redis);
    return sendFcall(redis, name, keys, args);
  });
}
