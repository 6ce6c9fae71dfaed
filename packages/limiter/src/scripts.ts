import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import type { Cluster, Redis } from 'ioredis';

/** The scripts, each one `.lua` file under lua/; a changed contract gets a new `.vN` suffix. */
const SCRIPT_FILES = {
  tollgateAcquireV1: 'acquire.v1.lua',
  tollgateReleaseV1: 'release.v1.lua',
  tollgateCancelV1: 'cancel.v1.lua',
  tollgatePumpV1: 'pump.v1.lua',
  tollgateHeartbeatV1: 'heartbeat.v1.lua',
  tollgatePauseV1: 'pause.v1.lua',
  tollgateObserveV1: 'observe.v1.lua',
  tollgateSetConcurrencyV1: 'set-concurrency.v1.lua',
  tollgateSnapshotV1: 'snapshot.v1.lua',
  tollgateConfigureV1: 'configure.v1.lua',
} as const;

type ScriptName = keyof typeof SCRIPT_FILES;
type RedisLike = Redis | Cluster;
/** A raw script reply: nested arrays of strings and integers. */
export type RawReply = ReadonlyArray<string | number | RawReply>;

const INCLUDE_PATTERN = /^--!include ([\w.-]+)$/m;

function readLua(file: string): string {
  return readFileSync(new URL(`./lua/${file}`, import.meta.url), 'utf8');
}

/** Inlines `--!include x.lua` lines (one level: the shared prelude). */
function scriptSource(file: string): string {
  const source = readLua(file);
  return source.replace(INCLUDE_PATTERN, (_line, included: string) => readLua(included));
}

let sources: Record<ScriptName, string> | undefined;

function allSources(): Record<ScriptName, string> {
  sources ??= Object.fromEntries(
    Object.entries(SCRIPT_FILES).map(([name, file]) => [name, scriptSource(file)]),
  ) as Record<ScriptName, string>;
  return sources;
}

type ScriptCommand = (key: string, ...args: Array<string | number>) => Promise<RawReply>;

/**
 * Loads every script once on a connection with `defineCommand`: ioredis sends EVALSHA and falls
 * back to EVAL on NOSCRIPT (after a Redis restart or failover).
 */
export function defineScripts(redis: RedisLike): Record<ScriptName, ScriptCommand> {
  const defined = redis as unknown as Record<string, unknown>;
  for (const [name, lua] of Object.entries(allSources())) {
    if (typeof defined[name] !== 'function') redis.defineCommand(name, { numberOfKeys: 1, lua });
  }
  const commands = {} as Record<ScriptName, ScriptCommand>;
  for (const name of Object.keys(SCRIPT_FILES) as ScriptName[]) {
    const command = defined[name];
    assert(typeof command === 'function');
    commands[name] = (command as ScriptCommand).bind(redis);
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
