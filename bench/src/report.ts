import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import type { BenchOptions } from './cli.js';
import type { ScenarioResult } from './scenarios.js';
import { markdownTable } from './format.js';

export interface MachineInfo {
  node: string;
  redis: string;
  cpuModel: string;
  cores: number;
  date: string;
  /** The checkout's commit, so a result can be traced to the code it measured. */
  commit: string;
}

/** The short commit of the checkout at `cwd` (this one by default), marked when the measured code has uncommitted changes. */
export function gitCommitOf(cwd?: string): string {
  try {
    const git = (args: string[]): string => execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], cwd }).trim();
    const dirty = git(['status', '--porcelain', '--', 'packages', 'bench/src']) !== ''; // measured code differs from the commit
    return `${git(['rev-parse', '--short', 'HEAD'])}${dirty ? ' + uncommitted changes' : ''}`;
  } catch {
    return 'unknown'; // not a git checkout: the report just says so
  }
}

export function machineInfo(redisVersion: string): MachineInfo {
  const cores = cpus();
  return { node: process.version, redis: redisVersion, cpuModel: cores[0]?.model.trim() ?? 'unknown', cores: cores.length, date: new Date().toISOString(), commit: gitCommitOf() };
}

/** One scenario as Markdown: title, what ran, the table, and the trials that failed. */
export function scenarioMarkdown(result: ScenarioResult): string {
  const parts = [`## ${result.title}`, '', result.description, '', result.table];
  if (result.failures.length > 0) parts.push('', ...result.failures.map((failure) => `- failed, no row: ${failure}`));
  return parts.join('\n');
}

function targetsMarkdown(results: readonly ScenarioResult[]): string | undefined {
  const rows = results.flatMap((result) =>
    result.targets.map((check) => [result.id, check.figure, check.target, check.measured, check.met === undefined ? 'reported' : check.met ? 'met' : 'MISSED']),
  );
  if (rows.length === 0) return undefined;
  return ['## Tollgate against its targets (DESIGN §6, ratios within this run)', '', markdownTable(['scenario', 'figure', 'target', 'measured', ''], rows)].join('\n');
}

/** The whole report: machine, settings, notes, one table per scenario, then Tollgate's target check. */
export function reportMarkdown(machine: MachineInfo, options: BenchOptions, notes: readonly string[], results: readonly ScenarioResult[]): string {
  const header = [
    '# Tollgate bench results',
    '',
    `${machine.date} · Node ${machine.node} · Redis ${machine.redis} · ${machine.cpuModel} × ${machine.cores} cores · commit ${machine.commit}`,
    '',
    `Mode: ${options.quick ? '--quick' : 'full'}${options.trials > 1 ? ` · ${options.trials} interleaved trials per cell, medians` : ''} · scenarios ${options.scenarios.join(
      ', ',
    )} · contenders ${options.contenders.join(', ')}`,
    '',
    'Absolute figures move with the machine\'s load; compare ratios within one run. The ceiling is static-split: a local semaphore per process with the limit split across processes; "of ceiling" divides by its utilization per permit.',
  ];
  if (notes.length > 0) header.push('', ...notes.map((note) => `- ${note}`));
  const targets = targetsMarkdown(results);
  return [header.join('\n'), ...results.map(scenarioMarkdown), ...(targets ? [targets] : [])].join('\n\n') + '\n';
}
