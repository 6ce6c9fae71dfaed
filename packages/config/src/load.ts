import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidConfigError } from '@tollgate/limiter';
import { formatValue, toError } from '@tollgate/limiter/internal';
import { parse as parseYaml } from 'yaml';
import { validateLimitsDocument, type LimitsDocument } from './document.js';

/** A limits document larger than this is not a limits document. */
export const DOCUMENT_BYTES_MAX = 1024 * 1024;
/** The file a process looks for in its working directory when `TOLLGATE_CONFIG` is unset. */
export const DOCUMENT_FILE_NAME = 'tollgate.yaml';
export const CONFIG_ENV = 'TOLLGATE_CONFIG';

/**
 * Parses and validates a document's text (YAML, so JSON too). Duplicate keys are refused; YAML aliases are bounded by
 * the `yaml` package's default (`maxAliasCount` 100).
 * @throws {@link InvalidConfigError} naming `source` and, for bad YAML, the line; for bad fields, each path and value.
 */
export function parseLimitsDocument(text: string, source: string): LimitsDocument {
  if (Buffer.byteLength(text, 'utf8') > DOCUMENT_BYTES_MAX) throw new InvalidConfigError(`${source} is larger than ${DOCUMENT_BYTES_MAX} bytes`);
  let value: unknown;
  try {
    value = parseYaml(text, { uniqueKeys: true });
  } catch (cause) {
    const firstLine = toError(cause).message.split('\n')[0];
    throw new InvalidConfigError(`${source} is not YAML or JSON: ${firstLine}`, { cause });
  }
  return validateLimitsDocument(value, source);
}

/** Reads and validates one document file. */
export async function readLimitsDocument(path: string): Promise<LimitsDocument> {
  let buffer: Buffer;
  try {
    buffer = await readFile(path);
  } catch (cause) {
    throw new InvalidConfigError(`cannot read limits document ${formatValue(path)}: ${toError(cause).message}`, { cause });
  }
  if (buffer.byteLength > DOCUMENT_BYTES_MAX) throw new InvalidConfigError(`limits document ${formatValue(path)} is larger than ${DOCUMENT_BYTES_MAX} bytes`);
  return parseLimitsDocument(buffer.toString('utf8'), path);
}

/** Where a process's document comes from. */
export type DocumentSource = { kind: 'file'; path: string } | { kind: 'environment' };

/**
 * Which document this process states: `TOLLGATE_CONFIG` (a path; it must exist), else `tollgate.yaml` in `cwd`,
 * else the environment shorthand (see {@link documentFromEnv}).
 */
export function documentSource(env: Readonly<Record<string, string | undefined>>, cwd: string = process.cwd()): DocumentSource {
  const configured = env[CONFIG_ENV];
  if (configured !== undefined && configured !== '') return { kind: 'file', path: configured };
  const local = join(cwd, DOCUMENT_FILE_NAME);
  return existsSync(local) ? { kind: 'file', path: local } : { kind: 'environment' };
}
