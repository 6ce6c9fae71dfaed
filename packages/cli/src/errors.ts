import { TollgateError } from '@tollgate/limiter';

/** Exit codes, stable for scripts. */
export const EXIT = {
  ok: 0,
  /** `limits diff`: the file differs from the fleet's limits. */
  differs: 1,
  /** A wrong command, option or value (a bad duration, a bad number). */
  usage: 2,
  /** No such limiter, queue or job. */
  notFound: 3,
  /** Redis did not answer. */
  unreachable: 4,
  /** The limits (a file, or a value like `concurrency N`) were refused. */
  refused: 5,
  /** Anything else (a bug: the message says what). */
  failed: 6,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line on stderr, exiting with `exitCode`. A TollgateError with code `CLI_FAILED`. */
export class CliError extends TollgateError {
  constructor(
    readonly exitCode: ExitCode,
    message: string,
    options?: ErrorOptions,
  ) {
    super('CLI_FAILED', message, options);
  }
}

/** Cuts a value shown in a message (a file name, a job id) to a readable length. */
export function shown(value: string, max = 200): string {
  return JSON.stringify(value.length > max ? `${value.slice(0, max)}…` : value);
}
