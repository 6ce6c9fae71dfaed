import { InvalidArgumentError, PRIORITY_MAX, PRIORITY_MIN } from '@tollgate/limiter';

/**
 * BullMQ priority for a Tollgate priority (0 = first … 9 = last). BullMQ's 0 means "no priority" and skips the
 * prioritized set, so every job gets 1 + priority: all jobs share one ordered set, FIFO within a priority.
 */
export function bullmqPriority(priority: number): number {
  if (!Number.isInteger(priority) || priority < PRIORITY_MIN || priority > PRIORITY_MAX)
    throw new InvalidArgumentError('priority', priority, `an integer from ${PRIORITY_MIN} to ${PRIORITY_MAX}`);
  return priority + 1;
}
