import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startMockAnthropic, type MockAnthropic } from '@tollgate/mock-anthropic';
import { BUILT_ENV, startRedis, uniqueName, type TestRedis } from '@tollgate/test-support';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';
import semver from 'semver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asExpected, type Case } from './error-cases.js';

/**
 * Issue 17: the public packages as a user gets them. Builds them, packs each with `npm pack`, lints each tarball's
 * contents with publint, and installs the tarballs into a scratch project in a temp dir, where an ES module and a
 * CommonJS module use them against a real Redis and the mock Anthropic API, and tsc checks their types from both.
 *
 * The install is made by hand, offline: each tarball is unpacked into the scratch project's node_modules, and each
 * dependency it declares (and nothing else) is linked from the repository's node_modules, after checking that the
 * repository's version satisfies the declared range. So an import the package does not declare fails here, and no
 * registry is needed on a fresh CI machine after `npm ci`.
 */

const execFileAsync = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const FIXTURES = fileURLToPath(new URL('./fixtures', import.meta.url));
const PUBLIC_PACKAGES = ['@tollgate/limiter', '@tollgate/config', '@tollgate/anthropic', '@tollgate/queue'] as const;
/** Build order: each package's build reads the types of the ones before it. */
const BUILD_ORDER = PUBLIC_PACKAGES;
/** What a tarball may hold besides package.json: the build, the sources its maps point to, the docs. */
const ALLOWED_TOP_LEVEL = new Set(['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist', 'src']);
const PREPARE_TIMEOUT_MS = 240_000;
/** A package name, maybe scoped, maybe with a subpath. */
const PACKAGE_SPECIFIER = /^(@[a-z0-9][\w.-]*\/)?[a-z0-9][\w.-]*(\/.*)?$/i;
const API_KEY = 'test-key';
const MODEL = 'claude-haiku-4-5';

interface PackedFile {
  path: string;
}
interface Packed {
  name: string;
  version: string;
  filename: string;
  files: PackedFile[];
}
interface Manifest {
  name: string;
  version: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  peerDependenciesMeta?: Record<string, { optional?: boolean }>;
}

let scratch: string;
let redis: TestRedis;
let mock: MockAnthropic;
const packed = new Map<string, Packed>();

async function run(command: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { cwd, env, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (error) {
    const failed = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${command} ${args.join(' ')} failed: ${failed.message}\n${failed.stdout ?? ''}\n${failed.stderr ?? ''}`, { cause: error });
  }
}

function installedDir(name: string): string {
  return join(scratch, 'node_modules', ...name.split('/'));
}

function manifestOf(name: string): Manifest {
  return JSON.parse(readFileSync(join(installedDir(name), 'package.json'), 'utf8')) as Manifest;
}

/** Links a third-party package from the repository's node_modules, checking its version against `range`. */
function linkFromRepository(name: string, range: string): void {
  const target = installedDir(name);
  if (existsSync(target)) return;
  const source = join(ROOT, 'node_modules', ...name.split('/'));
  const version = (JSON.parse(readFileSync(join(source, 'package.json'), 'utf8')) as { version: string }).version;
  expect(semver.satisfies(version, range), `${name}@${version} from the repository satisfies the declared ${range}`).toBe(true);
  mkdirSync(dirname(target), { recursive: true });
  symlinkSync(realpathSync(source), target, 'dir');
}

/** Bare specifiers imported by the shipped files (`.js` at run time, `.d.ts` for types), as package names. */
function importedPackages(dir: string, suffix: '.js' | '.d.ts'): Set<string> {
  const names = new Set<string>();
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith(suffix) && !(suffix === '.js' && entry.name.endsWith('.d.js'))) {
        const text = readFileSync(path, 'utf8');
        for (const match of text.matchAll(/(?:from\s+|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
          const specifier = match[1] ?? '';
          // relative and built-in modules need no declaration; the pattern skips quotes in comments such as '$'
          if (specifier.startsWith('.') || specifier.startsWith('node:') || !PACKAGE_SPECIFIER.test(specifier)) continue;
          const parts = specifier.split('/');
          names.add(specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : (parts[0] ?? specifier));
        }
      }
    }
  };
  walk(join(dir, 'dist'));
  return names;
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), 'tollgate-packed-'));
  const tarballs = join(scratch, 'tarballs');
  mkdirSync(tarballs);
  // `npm test` has just built every workspace from these sources (BUILT_ENV); a file run on its own builds them here
  if (process.env[BUILT_ENV] !== '1') for (const name of BUILD_ORDER) await run('npm', ['run', 'build', '--workspace', name], ROOT);
  const workspaces = PUBLIC_PACKAGES.flatMap((name) => ['--workspace', name]);
  const packs = JSON.parse(await run('npm', ['pack', '--json', '--pack-destination', tarballs, ...workspaces], ROOT)) as Packed[];
  for (const pack of packs) packed.set(pack.name, pack);

  // the scratch project: the tarballs unpacked, then each one's declared dependencies linked
  writeFileSync(join(scratch, 'package.json'), JSON.stringify({ name: 'scratch', private: true, version: '0.0.0' }));
  for (const pack of packs) {
    const dir = installedDir(pack.name);
    mkdirSync(dir, { recursive: true });
    await run('tar', ['-xzf', join(tarballs, pack.filename), '-C', dir, '--strip-components=1'], scratch);
  }
  for (const pack of packs) {
    const manifest = manifestOf(pack.name);
    for (const [name, range] of Object.entries({ ...manifest.dependencies, ...manifest.peerDependencies })) {
      if (PUBLIC_PACKAGES.includes(name as (typeof PUBLIC_PACKAGES)[number])) continue; // unpacked above, checked below
      linkFromRepository(name, range);
    }
  }
  linkFromRepository('@types/node', '*'); // for the type check only
  cpSync(FIXTURES, scratch, { recursive: true });

  redis = await startRedis();
  mock = await startMockAnthropic({ apiKeys: [API_KEY] });
}, PREPARE_TIMEOUT_MS);

afterAll(async () => {
  await mock?.close();
  await redis?.close();
  if (scratch !== undefined) rmSync(scratch, { recursive: true, force: true });
});

describe('the packed public packages', () => {
  it.each(PUBLIC_PACKAGES)('%s: the tarball holds the build, its sources, README, LICENSE and CHANGELOG, and nothing else', (name) => {
    const pack = packed.get(name);
    expect(pack).toBeDefined();
    const paths = (pack?.files ?? []).map((file) => file.path);
    expect(paths).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/index.js', 'dist/index.d.ts', 'src/index.ts']));
    expect(paths.filter((path) => !ALLOWED_TOP_LEVEL.has(path.split('/')[0] ?? ''))).toEqual([]);
    expect(paths.filter((path) => path.endsWith('.test.ts'))).toEqual([]);
    if (name === '@tollgate/limiter') expect(paths.filter((path) => path.startsWith('dist/lua/') && path.endsWith('.lua')).length).toBeGreaterThan(0);
    // every source map's sources are in the tarball, so the maps resolve
    const unresolved: string[] = [];
    for (const mapPath of paths.filter((path) => path.endsWith('.map'))) {
      const map = JSON.parse(readFileSync(join(installedDir(name), mapPath), 'utf8')) as { sources: string[] };
      for (const source of map.sources) {
        const resolved = relative(installedDir(name), join(installedDir(name), dirname(mapPath), source));
        if (!paths.includes(resolved)) unresolved.push(`${mapPath} -> ${source}`);
      }
    }
    expect(unresolved).toEqual([]);
  });

  it.each(PUBLIC_PACKAGES)('%s: the manifest says what a registry and a bundler need', (name) => {
    const manifest = JSON.parse(readFileSync(join(installedDir(name), 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({
      license: 'MIT',
      repository: { type: 'git', directory: expect.stringMatching(/^packages\//) },
      engines: { node: expect.any(String) },
      sideEffects: false,
      type: 'module',
      types: './dist/index.d.ts',
      exports: { '.': { types: './dist/index.d.ts', default: './dist/index.js' } },
    });
    expect(readFileSync(join(installedDir(name), 'LICENSE'), 'utf8')).toContain('MIT License');
  });

  it.each(PUBLIC_PACKAGES)('%s: publint finds nothing (warnings count as errors)', async (name) => {
    const { messages, pkg } = await publint({ pkgDir: installedDir(name), pack: false, level: 'suggestion', strict: true });
    expect(messages.map((message) => `${message.type}: ${formatMessage(message, pkg) ?? message.code}`)).toEqual([]);
  });

  it.each(PUBLIC_PACKAGES)('%s: every package it imports is declared, every dependency is used, ranges between the packages hold', (name) => {
    const manifest = manifestOf(name);
    const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);
    const runtime = importedPackages(installedDir(name), '.js');
    const types = importedPackages(installedDir(name), '.d.ts');
    expect([...runtime, ...types].filter((imported) => !declared.has(imported))).toEqual([]);
    expect([...declared].filter((dependency) => !runtime.has(dependency) && !types.has(dependency))).toEqual([]);
    // an optional peer is only ever needed for types
    for (const [peer, meta] of Object.entries(manifest.peerDependenciesMeta ?? {})) if (meta.optional === true) expect(runtime.has(peer), `${peer} is optional`).toBe(false);
    for (const [dependency, range] of Object.entries({ ...manifest.dependencies, ...manifest.peerDependencies })) {
      expect(range).not.toBe('*');
      const sibling = packed.get(dependency);
      if (sibling !== undefined) expect(semver.satisfies(sibling.version, range), `${dependency}@${sibling.version} satisfies ${name}'s ${range}`).toBe(true);
    }
  });

  it.each([
    { format: 'ESM (import)', script: 'esm.mjs' },
    { format: 'CommonJS (require)', script: 'cjs.cjs' },
  ])('$format: a limiter against a real Redis, a limited client that retries a 429 from the mock, a producer; bad inputs throw TollgateErrors with codes', async ({ script }) => {
    mock.reset();
    mock.setConfig({ faults: { retryAfterS: 1, schedule: [{ nth: 1, fault: '429' }] } });
    const env = {
      PATH: process.env.PATH,
      REDIS_URL: redis.url,
      MOCK_URL: mock.url,
      API_KEY,
      MODEL,
      LIMITER_NAME: uniqueName('packed'),
      QUEUE_NAME: uniqueName('packed'),
    };
    // plain node, in the scratch project: no tsx, no source condition, nothing from the repository but what is linked
    const result = JSON.parse(await run(process.execPath, [script], scratch, env)) as Record<string, unknown>;
    expect(result).toMatchObject({
      badConfig: { isTollgateError: true, code: 'INVALID_CONFIG' },
      inFlightHeld: 1,
      messageType: 'message',
      attempts: 2,
      rateLimited: 1,
      jobState: 'prioritized', // BullMQ's state of a waiting job with a priority
      inFlightAfter: 0,
      limitsDocument: { pools: ['haiku-4', 'sonnet-4'], haikuPool: 'haiku-4', badDocument: { isTollgateError: true, code: 'INVALID_CONFIG' } },
    });
    expect(String((result.limitsDocument as { badDocument: { message: string } }).badDocument.message)).toContain('accounts.main.concurrency');
    expect(String((result.badConfig as { message: string }).message)).toContain('concurrency');
    // the error tree from a user's side: each bad input throws the documented TollgateError class with its code
    const cases = result.badInputs as Case[];
    expect(cases.length).toBeGreaterThanOrEqual(30);
    expect(cases.map(({ message: _message, ...rest }) => rest)).toEqual(cases.map(asExpected));
    if (script === 'cjs.cjs') expect(result.sameModuleAsImport).toBe(true);
  });

  it('tsc resolves the published types from an ES module and a CommonJS module (module nodenext)', async () => {
    const tsconfig = {
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2023', strict: true, noEmit: true, skipLibCheck: true, types: ['node'] },
      files: ['types-esm.mts', 'types-cjs.cts'],
    };
    writeFileSync(join(scratch, 'tsconfig.json'), JSON.stringify(tsconfig));
    await run(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], scratch);
  });
});
