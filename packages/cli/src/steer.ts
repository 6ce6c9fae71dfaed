import { formatDuration } from './duration.js';
import { CliError, EXIT, shown } from './errors.js';
import { openLimiter, type Context } from './fleet.js';

/** The reason a CLI pause carries in the limiter's `paused` event. */
const PAUSE_REASON = 'tollgate cli';

/** The one limiter a steering command acts on. */
function oneName(context: Context): string {
  const [name, ...others] = context.names;
  if (name === undefined || others.length > 0) throw new CliError(EXIT.usage, `this command acts on one limiter; got --name ${context.names.map((n) => shown(n)).join(', ')}`);
  return name;
}

/** `pause DURATION`: a fleet-wide cool-down; it extends a longer pause already running, never shortens it. */
export async function pauseCommand(context: Context, pauseMs: number): Promise<void> {
  const { limiter } = await openLimiter(context, oneName(context));
  const { pausedUntilMs } = await limiter.pause(pauseMs, PAUSE_REASON);
  const { nowMs } = await limiter.snapshot();
  const pausedForMs = Math.max(0, pausedUntilMs - nowMs);
  const longer = pausedForMs > pauseMs + 1_000;
  context.print(
    context.json
      ? JSON.stringify({ name: limiter.name, pausedUntilMs, pausedForMs, keptLongerPause: longer })
      : `${limiter.name}: paused for ${formatDuration(pausedForMs)}${
          longer ? ' (a longer pause was already running; a pause never shortens another)' : ''
        }; \`tollgate resume\` ends it`,
  );
}

/** `resume`: ends a pause now. */
export async function resumeCommand(context: Context): Promise<void> {
  const { limiter } = await openLimiter(context, oneName(context));
  const { pausedUntilMs } = await limiter.resume();
  context.print(
    context.json
      ? JSON.stringify({ name: limiter.name, wasPaused: pausedUntilMs > 0, wasPausedUntilMs: pausedUntilMs })
      : `${limiter.name}: ${pausedUntilMs > 0 ? 'resumed' : 'was not paused'}`,
  );
}

/** `concurrency N`: the effective limit, 1 to the configured limit (adaptive control moves it from there). */
export async function concurrencyCommand(context: Context, concurrency: number): Promise<void> {
  const { limiter, reading } = await openLimiter(context, oneName(context));
  const { limits } = reading;
  if (limits.concurrency === null) throw new CliError(EXIT.refused, `limiter ${shown(limiter.name)} has no concurrency limit (only rates); set one with \`tollgate limits apply\``);
  if (concurrency > limits.concurrency) {
    throw new CliError(
      EXIT.refused,
      `concurrency ${concurrency} is above the configured ${limits.concurrency} of limiter ${shown(
        limiter.name,
      )}; the effective limit stays at or below it (raise the configured one with \`tollgate limits apply\`)`,
    );
  }
  const effective = await limiter.setConcurrency(concurrency);
  context.print(
    context.json
      ? JSON.stringify({ name: limiter.name, concurrency: effective, concurrencyConfigured: limits.concurrency })
      : `${limiter.name}: effective concurrency ${effective} of ${limits.concurrency} configured`,
  );
}
