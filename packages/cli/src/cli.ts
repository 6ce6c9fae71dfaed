import { parseArgs } from 'node:util';
import { toError } from '@tollgate/limiter/internal';
import { CONCURRENCY_MAX, LIMITER_NAME_PATTERN, LimiterUnavailableError, TollgateError } from '@tollgate/limiter';
import { POOL_NAME_PATTERN } from '@tollgate/config';
import { QUEUE_NAME_PATTERN, QueueUnavailableError, TENANT_PATTERN, accountQueueName, isQueueName, poolQueueName, tenantQueueName } from '@tollgate/queue';
import { EnvError, isConnectionError, parseEnv, tollgateEnvSchema } from '@tollgate/queue/internal';
import { z } from 'zod';
import { connect, type RedisTarget } from './connection.js';
import { durationSchema } from './duration.js';
import { CliError, EXIT, shown } from './errors.js';
import { storedDocument, type Context } from './fleet.js';
import { limitsApplyCommand, limitsDiffCommand, limitsShowCommand } from './limits.js';
import { CLEANABLE_STATES, cleanCommand, drainCommand, jobsShowCommand, queueCountsCommand, retryFailedCommand } from './queue.js';
import { statusCommand } from './status.js';
import { concurrencyCommand, pauseCommand, resumeCommand } from './steer.js';

/** How long one Redis call may take before the command fails, unless `--timeout` says otherwise. */
export const REDIS_TIMEOUT_MS_DEFAULT = 2_000;
/** `status --watch` refreshes this often unless `--interval` says otherwise. */
export const WATCH_INTERVAL_MS_DEFAULT = 1_000;

const OPTIONS = {
  redis: { type: 'string' },
  name: { type: 'string', multiple: true },
  queue: { type: 'string' },
  account: { type: 'string' },
  tenant: { type: 'string' },
  pool: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  watch: { type: 'boolean', short: 'w' },
  interval: { type: 'string' },
  'older-than': { type: 'string' },
  state: { type: 'string', multiple: true },
  delayed: { type: 'boolean' },
  yes: { type: 'boolean' },
  'show-content': { type: 'boolean' },
} as const;

type OptionName = keyof typeof OPTIONS;
type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

const GLOBAL_OPTIONS: readonly OptionName[] = ['redis', 'name', 'queue', 'account', 'tenant', 'pool', 'timeout', 'json', 'help'];

const GLOBAL_HELP = `Global options:
  --redis URL        redis:// or rediss:// URL (default: REDIS_CLUSTER_NODES, else REDIS_URL, else redis://127.0.0.1:6379)
  --name NAME        limiter name (default: TOLLGATE_NAME, else "anthropic"); status takes several
  --queue NAME       queue name (default: TOLLGATE_QUEUE, else "messages"), or an account's or tenant's queue as
                     BullMQ names it (<queue>@<account>, <queue>@<account>~<pool>, <queue>@<account>#<tenant>,
                     <queue>@<account>~<pool>#<tenant>)
  --account NAME     the queue of one account of the limits document: <queue>@<account>
  --tenant NAME      the queue of one tenant: <queue>@<account>#<tenant> (its account: --account, else the fleet's
                     limits document's)
  --pool NAME        with --account or --tenant, the queue of one pool of an account with several:
                     <queue>@<account>~<pool>[#<tenant>] (a tenant with a concurrency cap has no pool queues)
  --timeout D        deadline of each Redis call (default 2s)
  --json             one JSON document on stdout, for scripts
  -h, --help         help for a command

Exit codes: 0 ok, 1 limits differ (limits diff), 2 wrong usage, 3 no such limiter/queue/job, 4 Redis unreachable,
5 refused (an invalid limits file, a concurrency above the configured limit), 6 anything else.`;

interface Command {
  usage: string;
  summary: string;
  options: readonly OptionName[];
  /** Positional arguments after the command words. */
  arguments: number;
  run(context: Context, args: readonly string[], values: Values): Promise<number | void>;
}

const parse = <T>(schema: z.ZodType<T>, value: unknown, what: string): T => {
  const result = schema.safeParse(value);
  if (!result.success) throw new CliError(EXIT.usage, `${what} ${shown(String(value))}: ${result.error.issues.map((issue) => issue.message).join('; ')}`);
  return result.data;
};

const singleName = (context: Context): string => {
  if (context.names.length !== 1) throw new CliError(EXIT.usage, 'this command acts on one limiter: pass one --name');
  return context.names[0] ?? '';
};

const COMMANDS: Record<string, Command> = {
  status: {
    usage: 'tollgate status [--watch [--interval D]] [--name NAME ...] [--json]',
    summary:
      "per limiter: in flight / limit, waiting, buckets, pause, adaptive concurrency; queue counts; without --name every account of the fleet's limits document, each with its queue",
    options: ['watch', 'interval'],
    arguments: 0,
    run: (context, _args, values) =>
      statusCommand(context, {
        watch: values.watch === true,
        intervalMs: values.interval === undefined ? WATCH_INTERVAL_MS_DEFAULT : Math.max(100, parse(durationSchema, values.interval, '--interval')),
      }),
  },
  pause: {
    usage: 'tollgate pause DURATION [--name NAME]',
    summary: 'pause grants fleet-wide for DURATION (30s, 2m, 1h); extends a longer pause, never shortens it',
    options: [],
    arguments: 1,
    run: (context, [duration]) => pauseCommand(context, parse(durationSchema, duration, 'duration')),
  },
  resume: {
    usage: 'tollgate resume [--name NAME]',
    summary: 'end a pause now',
    options: [],
    arguments: 0,
    run: (context) => resumeCommand(context),
  },
  concurrency: {
    usage: 'tollgate concurrency N [--name NAME]',
    summary: 'set the effective concurrency limit, 1 to the configured limit',
    options: [],
    arguments: 1,
    run: (context, [value]) => concurrencyCommand(context, parse(z.coerce.number().int('expected a whole number').min(1).max(CONCURRENCY_MAX), value, 'concurrency')),
  },
  'limits show': {
    usage: 'tollgate limits show [--name NAME] [--json]',
    summary: "print the limits in force, as a file `limits apply` takes (YAML), and the fleet's limits document when one was applied",
    options: [],
    arguments: 0,
    run: (context) => limitsShowCommand(context, singleName(context)),
  },
  'limits diff': {
    usage: 'tollgate limits diff FILE [--name NAME]',
    summary: "what applying FILE (YAML or JSON; one limiter's limits, or a whole limits document with `accounts`) would change; exit 1 when it differs",
    options: [],
    arguments: 1,
    run: (context, [file]) => limitsDiffCommand(context, singleName(context), file ?? ''),
  },
  'limits apply': {
    usage: 'tollgate limits apply FILE [--name NAME]',
    summary:
      "write FILE's limits for the whole fleet; a document (`accounts`, `tenants`) applies every account's limits and the tenants' policy (refused whole when any field is invalid)",
    options: [],
    arguments: 1,
    run: (context, [file]) => limitsApplyCommand(context, singleName(context), file ?? ''),
  },
  'queue counts': {
    usage: 'tollgate queue counts [--queue NAME] [--account NAME [--tenant NAME] [--pool NAME]] [--json]',
    summary: 'jobs per state',
    options: [],
    arguments: 0,
    run: (context) => queueCountsCommand(context),
  },
  'queue retry-failed': {
    usage: 'tollgate queue retry-failed [--queue NAME] [--account NAME [--tenant NAME] [--pool NAME]]',
    summary: 'put every failed job back in the queue',
    options: [],
    arguments: 0,
    run: (context) => retryFailedCommand(context),
  },
  'queue clean': {
    usage: 'tollgate queue clean --older-than D [--state completed|failed ...] [--queue NAME] [--account NAME [--tenant NAME] [--pool NAME]]',
    summary: 'remove finished jobs that ended more than D ago (default: completed and failed)',
    options: ['older-than', 'state'],
    arguments: 0,
    run: (context, _args, values) => {
      if (values['older-than'] === undefined) throw new CliError(EXIT.usage, 'queue clean needs --older-than DURATION (e.g. 1h, 7d)');
      const states = parse(z.array(z.enum(CLEANABLE_STATES)).min(1), values.state ?? [...CLEANABLE_STATES], '--state');
      return cleanCommand(context, parse(durationSchema, values['older-than'], '--older-than'), states);
    },
  },
  'queue drain': {
    usage: 'tollgate queue drain --yes [--delayed] [--queue NAME] [--account NAME [--tenant NAME] [--pool NAME]]',
    summary: 'remove every waiting job (and delayed ones with --delayed); running jobs finish',
    options: ['yes', 'delayed'],
    arguments: 0,
    run: (context, _args, values) => drainCommand(context, { yes: values.yes === true, delayed: values.delayed === true }),
  },
  'jobs show': {
    usage: 'tollgate jobs show ID [--show-content] [--queue NAME] [--account NAME [--tenant NAME] [--pool NAME]] [--json]',
    summary: 'state, attempts, error and usage of a job (the prompt and answer only with --show-content)',
    options: ['show-content'],
    arguments: 1,
    run: (context, [id], values) => jobsShowCommand(context, id ?? '', values['show-content'] === true),
  },
};

export function helpText(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length));
  return [
    'tollgate: see and steer a Tollgate fleet',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}  ${command.summary}`),
    '',
    GLOBAL_HELP,
    '',
    'Run `tollgate COMMAND --help` for a command.',
  ].join('\n');
}

function commandHelp(name: string, command: Command): string {
  return [`${command.usage}`, '', `${name}: ${command.summary}`, '', GLOBAL_HELP].join('\n');
}

/** `--redis`, else the environment's Redis (a Cluster for REDIS_CLUSTER_NODES). */
function redisTarget(flag: string | undefined, env: z.output<typeof cliEnvSchema>): RedisTarget {
  if (flag !== undefined) return { kind: 'url', url: parse(z.string().regex(/^rediss?:\/\/\S+$/, 'expected a redis:// or rediss:// URL'), flag, '--redis') };
  if (env.REDIS_CLUSTER_NODES !== undefined) {
    const nodes = env.REDIS_CLUSTER_NODES.split(',').map((node) => {
      const [host = '', port = ''] = node.split(':');
      return { host, port: Number(port) };
    });
    return { kind: 'cluster', nodes, shown: env.REDIS_CLUSTER_NODES };
  }
  return { kind: 'url', url: env.REDIS_URL };
}

const cliEnvSchema = tollgateEnvSchema.pick({ REDIS_URL: true, REDIS_CLUSTER_NODES: true, TOLLGATE_NAME: true, TOLLGATE_QUEUE: true });

/** Where the CLI writes. */
export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  env: Readonly<Record<string, string | undefined>>;
  signal: AbortSignal;
}

/** Runs one command line; returns the exit code. Never throws. */
export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const closers: Array<() => Promise<void>> = [];
  let redis: Context['redis'] | undefined;
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: [...argv], options: OPTIONS, allowPositionals: true, strict: true });
    } catch (error) {
      throw new CliError(EXIT.usage, `${toError(error).message}\nRun \`tollgate --help\`.`);
    }
    const { values, positionals } = parsed;
    const two = positionals.slice(0, 2).join(' ');
    const name = COMMANDS[two] !== undefined ? two : (positionals[0] ?? '');
    const command = COMMANDS[name];
    if (command === undefined) {
      if (positionals.length === 0) {
        io.out(helpText());
        return values.help === true ? EXIT.ok : EXIT.usage;
      }
      throw new CliError(EXIT.usage, `unknown command ${shown(positionals.join(' '))}\nRun \`tollgate --help\`.`);
    }
    if (values.help === true) {
      io.out(commandHelp(name, command));
      return EXIT.ok;
    }
    const args = positionals.slice(name.split(' ').length);
    if (args.length !== command.arguments) throw new CliError(EXIT.usage, `${name} takes ${command.arguments} argument(s), got ${args.length}\nusage: ${command.usage}`);
    const allowed = new Set<string>([...GLOBAL_OPTIONS, ...command.options]);
    const stray = Object.keys(values).filter((option) => !allowed.has(option));
    if (stray.length > 0) throw new CliError(EXIT.usage, `${name} does not take --${stray.join(', --')}\nusage: ${command.usage}`);

    let env;
    try {
      env = parseEnv(cliEnvSchema, io.env);
    } catch (error) {
      if (error instanceof EnvError) throw new CliError(EXIT.usage, `invalid environment: ${error.message}`);
      throw error;
    }
    const names = (values.name ?? [env.TOLLGATE_NAME]).map((limiterName) =>
      parse(z.string().regex(LIMITER_NAME_PATTERN, 'letters, digits and :._- only, 1 to 200 characters'), limiterName, '--name'),
    );
    const baseQueue = parse(
      z.string().refine(isQueueName, 'a queue name (letters, digits and ._-, 1 to 100 characters), or <queue>@<account>[~<pool>][#<tenant>]'),
      values.queue ?? env.TOLLGATE_QUEUE,
      '--queue',
    );
    if ((values.account !== undefined || values.tenant !== undefined || values.pool !== undefined) && !QUEUE_NAME_PATTERN.test(baseQueue)) {
      throw new CliError(EXIT.usage, `--queue ${shown(baseQueue)} names an account's queue already: with --account, --tenant or --pool, give the plain queue name`);
    }
    if (values.pool !== undefined && values.account === undefined && values.tenant === undefined)
      throw new CliError(EXIT.usage, '--pool selects a pool of an account: pass --account or --tenant too');
    const pool = values.pool === undefined ? undefined : parse(z.string().regex(POOL_NAME_PATTERN, 'letters, digits and ._- only, 1 to 64 characters'), values.pool, '--pool');
    const account =
      values.account === undefined ? undefined : parse(z.string().regex(LIMITER_NAME_PATTERN, 'letters, digits and :._- only, 1 to 200 characters'), values.account, '--account');
    const tenant = values.tenant === undefined ? undefined : parse(z.string().regex(TENANT_PATTERN, 'letters, digits and ._- only, 1 to 64 characters'), values.tenant, '--tenant');
    const timeoutMs = values.timeout === undefined ? REDIS_TIMEOUT_MS_DEFAULT : parse(durationSchema.pipe(z.number().min(10, 'at least 10ms')), values.timeout, '--timeout');
    redis = await connect(redisTarget(values.redis, env), timeoutMs);
    const selected = await selectQueue({ redis, timeoutMs }, baseQueue, account, tenant, pool);
    const context: Context = {
      redis,
      names,
      namesGiven: values.name !== undefined,
      queue: selected.queue,
      baseQueue,
      account: selected.account,
      timeoutMs,
      json: values.json === true,
      print: io.out,
      closers,
      signal: io.signal,
    };
    return (await command.run(context, args, values)) ?? EXIT.ok;
  } catch (error) {
    io.err(`tollgate: ${describe(error)}`);
    return exitCodeOf(error);
  } finally {
    for (const close of closers.reverse()) await close().catch(() => {});
    redis?.disconnect();
  }
}

/**
 * The queue `--account`, `--tenant` and `--pool` select on `baseQueue`: the account's (`<queue>@<account>`), or the
 * tenant's on its account (`<queue>@<account>#<tenant>`, the account from `--account`, else from the fleet's stored
 * document); with `--pool`, that pool's queue on either (`<queue>@<account>~<pool>[#<tenant>]`).
 */
async function selectQueue(
  context: Pick<Context, 'redis' | 'timeoutMs'>,
  baseQueue: string,
  account: string | undefined,
  tenant: string | undefined,
  pool: string | undefined,
): Promise<{ queue: string; account: string | undefined }> {
  const ofPool = (accountQueue: string) => (pool === undefined ? accountQueue : poolQueueName(accountQueue, pool));
  if (tenant === undefined) return { queue: account === undefined ? baseQueue : ofPool(accountQueueName(baseQueue, account)), account };
  let tenantAccount = account;
  if (tenantAccount === undefined) {
    const stored = await storedDocument(context);
    const policy = stored !== undefined && Object.hasOwn(stored.document.tenants, tenant) ? stored.document.tenants[tenant] : undefined;
    if (policy === undefined) throw new CliError(EXIT.usage, `--tenant ${shown(tenant)}: the fleet's limits document names no such tenant; pass its --account too`);
    tenantAccount = policy.account;
  }
  return { queue: tenantQueueName(ofPool(accountQueueName(baseQueue, tenantAccount)), tenant), account: tenantAccount };
}

function describe(error: unknown): string {
  if (error instanceof CliError) return error.message;
  if (error instanceof LimiterUnavailableError || error instanceof QueueUnavailableError) return `Redis is unreachable: ${error.message}`;
  if (error instanceof TollgateError) return `${error.code}: ${error.message}`;
  return toError(error).message;
}

function exitCodeOf(error: unknown): number {
  if (error instanceof CliError) return error.exitCode;
  if (error instanceof LimiterUnavailableError || error instanceof QueueUnavailableError) return EXIT.unreachable;
  if (isConnectionError(error)) return EXIT.unreachable;
  if (error instanceof TollgateError) return EXIT.refused;
  return EXIT.failed;
}
