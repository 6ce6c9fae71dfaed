import { strict as assert } from 'node:assert';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Cluster, type Redis } from 'ioredis';

/**
 * The scripts, one `.lua` file each under lua/, loaded as one Redis Functions library (Redis ≥ 7.0).
 * A function is defined once, when the library loads, so a call pays for no prelude and no closures;
 * see docs/adr/0002-redis-functions.md. The library and function names carry a hash of the code,
 * so a changed contract never replaces the functions an older worker still calls.
 */
const SCRIPT_FILES = {
  acquire: 'acquire.v1.lua',
  release: 'release.v1.lua',
  cancel: 'cancel.v1.lua',
  pump: 'pump.v1.lua',
  heartbeat: 'heartbeat.v1.lua',
  pause: 'pause.v1.lua',
  resume: 'resume.v1.lua',
  observe: 'observe.v1.lua',
  set_concurrency: 'set-concurrency.v1.lua',
  snapshot: 'snapshot.v1.lua',
  configure: 'configure.v1.lua',
} as const;

export type ScriptName = keyof typeof SCRIPT_FILES;
type RedisLike = Redis | Cluster;
/** A raw script reply: nested arrays of strings and integers. */
export type RawReply = ReadonlyArray<string | number | RawReply>;

const HASH_PLACEHOLDER = /\{\{hash\}\}/g;
const LIBRARY_HASH_CHARS = 12;

function readLua(file: string): string {
  return readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
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
    functionName: (script) => `tollgate_${script}_v1_${hash}`,
  };
  return library;
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

type ScriptCall = (key: string, ...args: Array<string | number>) => Promise<RawReply>;

/**
 * Typed callers for each function: one FCALL each. When Redis answers that the function is
 * missing (a restart without persistence, a failover, a new Cluster node), the library is loaded
 * again and the call sent once more.
 */
export function defineScripts(redis: RedisLike): Record<ScriptName, ScriptCall> {
  const { functionName } = tollgateLibrary();
  const commands = {} as Record<ScriptName, ScriptCall>;
  for (const script of Object.keys(SCRIPT_FILES) as ScriptName[]) {
    const name = functionName(script);
    commands[script] = async (key, ...args) => {
      try {
        return (await redis.fcall(name, 1, key, ...args)) as RawReply;
      } catch (error) {
        if (!(error instanceof Error) || !/function not found/i.test(error.message)) throw error;
        await loadLibrary(redis);
        return (await redis.fcall(name, 1, key, ...args)) as RawReply;
      }
    };
  }
  return commands;
}

// ---- reply parsing: assertions guard the contract of each script's header ----

export const STATUS_RESYNC = -1;

/** A grant as scripts send it: 'waiterId fence expiresAtMs grantedAtMs'. */
export interface GrantMessage {
  waiterId: string;
  fence: number;
  expiresAtMs: number;
  grantedAtMs: number;
}

export function parseGrant(message: string): GrantMessage {
  const [waiterId, fence, expiresAtMs, grantedAtMs] = message.split(' ');
  assert(waiterId !== undefined && fence !== undefined && expiresAtMs !== undefined && grantedAtMs !== undefined, `bad grant message ${message}`);
  return { waiterId, fence: Number(fence), expiresAtMs: Number(expiresAtMs), grantedAtMs: Number(grantedAtMs) };
}

export function integer(value: RawReply[number] | undefined): number {
  assert(typeof value === 'number' && Number.isSafeInteger(value), `expected an integer in a script reply, got ${String(value)}`);
  return value;
}

export function text(value: RawReply[number] | undefined): string {
  assert(typeof value === 'string', `expected a string in a script reply, got ${String(value)}`);
  return value;
}

export function list(value: RawReply[number] | undefined): RawReply {
  assert(Array.isArray(value), `expected an array in a script reply, got ${String(value)}`);
  return value as RawReply;
}

export function grantsIn(value: RawReply[number] | undefined): GrantMessage[] {
  return list(value).map((message) => parseGrant(text(message)));
}

/** `{-1, epoch}`: the dataset has no epoch or a different one; the client must re-register. */
export function isResync(reply: RawReply): boolean {
  return reply[0] === STATUS_RESYNC && reply.length === 2;
}
