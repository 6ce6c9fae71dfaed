import { Redis } from 'ioredis';

/** Commands and round trips that this process's ioredis clients wrote since the last `reset`. */
export interface CommandCounts {
  commands: number;
  /** A pipeline or MULTI sent in one write counts once; every other command counts once. */
  roundTrips: number;
}

const counts: CommandCounts = { commands: 0, roundTrips: 0 };
const installedOn = new WeakSet<object>();

type SendCommand = Redis['sendCommand'];
type CommandArg = Parameters<SendCommand>[0];
type StreamArg = Parameters<SendCommand>[1];

function isPipelineStream(stream: StreamArg): boolean {
  return stream !== undefined && 'isPipeline' in stream && stream.isPipeline === true;
}

/**
 * Wraps `Redis.prototype.sendCommand` once per process, so every ioredis client any library
 * creates (BullMQ, bottleneck, redis-semaphore, Tollgate) is counted, heartbeats included.
 * A command re-sent from the offline queue is counted once. `redisClass`: another copy of ioredis
 * (the baseline limiter's checkout has its own node_modules), counted into the same totals.
 */
export function installCommandCounter(redisClass: typeof Redis = Redis): void {
  if (installedOn.has(redisClass)) return;
  installedOn.add(redisClass);
  const original = redisClass.prototype.sendCommand;
  const seenCommands = new WeakSet<CommandArg>();
  const seenPipelines = new WeakSet<object>();
  redisClass.prototype.sendCommand = function countedSendCommand(this: Redis, command: CommandArg, stream?: StreamArg): unknown {
    if (!seenCommands.has(command)) {
      seenCommands.add(command);
      counts.commands += 1;
      if (!isPipelineStream(stream)) counts.roundTrips += 1;
      else if (stream !== undefined && !seenPipelines.has(stream)) {
        seenPipelines.add(stream);
        counts.roundTrips += 1;
      }
    }
    return original.call(this, command, stream);
  };
}

/** Zeroes the counters; called when a measured run starts. */
export function resetCommandCounts(): void {
  counts.commands = 0;
  counts.roundTrips = 0;
}

export function commandCounts(): CommandCounts {
  return { ...counts };
}
