import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { REPO_ROOT, entryCommand } from './processes.js';

/**
 * Reads docker-compose.yml the way Compose does (YAML merge keys, `${VAR:-default}` interpolation, both environment
 * syntaxes) and turns each service into what a local process needs. The mapping from containers to local processes:
 *
 * - A service hostname in a URL (`redis://redis:6379`, `http://mock-anthropic:4010`) → `127.0.0.1:<local port>`,
 *   where the local port is the one given to that service's container port. A port the service does not `expose`
 *   or publish is an error: in Compose it would be a refused connection.
 * - A variable named `PORT` or `*_PORT` whose value is one of the service's own container ports → that instance's
 *   local port (each replica of a scaled service gets its own).
 * - `image: redis:7` → the local `redis-server` binary with the compose file's own arguments.
 * - A built service → the last stage of its Dockerfile: `WORKDIR /app/services/<SERVICE>` + `CMD ["node", "dist/main.js"]`
 *   is `services/<SERVICE>/dist/main.js` in this checkout (the image copies the repository to /app), run from its
 *   TypeScript source `services/<SERVICE>/src/main.ts` through tsx (tests need no build).
 * - A `CMD` healthcheck runs locally with the same port mapping (an argument equal to a container port, or
 *   `127.0.0.1:<port>` / `localhost:<port>` inside an argument).
 */

type StringMap = Record<string, string | number | boolean | null> | string[];

/** The part of the Compose schema this mapping reads. */
export interface ComposeServiceSpec {
  image?: string;
  build?: { context: string; dockerfile?: string; args?: StringMap };
  command?: string[];
  environment?: StringMap;
  ports?: Array<string | number>;
  expose?: Array<string | number>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[]; interval?: string; retries?: number };
  container_name?: string;
  /** Started only when one of these profiles is active (`docker compose --profile NAME up`). */
  profiles?: string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringArray(value: unknown, what: string): string[] {
  if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) throw new Error(`${what}: expected a list of strings`);
  return value;
}

/** One service as read from the compose file, interpolated and normalised. */
export interface ComposeService {
  name: string;
  spec: ComposeServiceSpec;
  environment: Record<string, string>;
  /** Container ports other services may reach (`expose` and the container side of `ports`). */
  containerPorts: number[];
  /** Published `host:container` pairs. */
  published: Array<{ host: number; container: number }>;
  dependsOn: Array<{ service: string; condition: string }>;
}

const VARIABLE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}/g;

/** Compose's interpolation: `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset). */
export function interpolate(value: string, hostEnv: Readonly<Record<string, string | undefined>>): string {
  return value.replace(VARIABLE, (_match, name: string, operator: string | undefined, fallback: string | undefined) => {
    const set = hostEnv[name];
    if (operator === ':-') return set === undefined || set === '' ? (fallback ?? '') : set;
    if (operator === '-') return set === undefined ? (fallback ?? '') : set;
    return set ?? '';
  });
}

function interpolateAll(node: unknown, hostEnv: Readonly<Record<string, string | undefined>>): unknown {
  if (typeof node === 'string') return interpolate(node, hostEnv);
  if (Array.isArray(node)) return node.map((item) => interpolateAll(item, hostEnv));
  if (typeof node === 'object' && node !== null) return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, interpolateAll(value, hostEnv)]));
  return node;
}

function toRecord(value: ComposeServiceSpec['environment']): Record<string, string> {
  if (value === undefined) return {};
  if (Array.isArray(value)) {
    return Object.fromEntries(value.map((entry) => [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]));
  }
  return Object.fromEntries(Object.entries(value).map(([key, raw]) => [key, raw === null ? '' : String(raw)]));
}

function parsePort(text: string): number {
  const port = Number(text);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) throw new Error(`not a port: ${JSON.stringify(text)}`);
  return port;
}

/**
 * Reads and interpolates `docker-compose.yml` with `hostEnv` as the shell environment Compose would see. Like
 * `docker compose up`, it keeps only services without `profiles` or with one of `activeProfiles`.
 */
export function loadCompose(
  hostEnv: Readonly<Record<string, string | undefined>> = {},
  file = join(REPO_ROOT, 'docker-compose.yml'),
  activeProfiles: readonly string[] = [],
): Map<string, ComposeService> {
  const raw: unknown = parse(readFileSync(file, 'utf8'), { merge: true });
  const parsed = interpolateAll(raw, hostEnv);
  if (!isRecord(parsed) || !isRecord(parsed.services)) throw new Error(`${file}: no services`);
  const services = new Map<string, ComposeService>();
  for (const [name, value] of Object.entries(parsed.services)) {
    if (!isRecord(value)) throw new Error(`${file}: service ${name} is not a mapping`);
    const spec = value as ComposeServiceSpec; // the fields read below are checked where they are used
    if (spec.profiles !== undefined && !spec.profiles.some((profile) => activeProfiles.includes(profile))) continue;
    const published = (spec.ports ?? []).map((entry) => {
      const parts = String(entry).split(':');
      const container = parsePort(parts.at(-1) ?? '');
      return { host: parts.length > 1 ? parsePort(parts.at(-2) ?? '') : 0, container };
    });
    const containerPorts = [...new Set([...(spec.expose ?? []).map((port) => parsePort(String(port))), ...published.map((port) => port.container)])];
    const dependsOn = Object.entries(spec.depends_on ?? {}).map(([service, { condition }]) => ({ service, condition }));
    services.set(name, { name, spec, environment: toRecord(spec.environment), containerPorts, published, dependsOn });
  }
  return services;
}

/** Local ports of every service instance: `portOf(service, containerPort, replica)`. */
export type PortMap = (service: string, containerPort: number, replica?: number) => number;

/** Rewrites a service's environment for a local process (see the module comment). */
export function localEnvironment(service: ComposeService, services: ReadonlyMap<string, ComposeService>, portOf: PortMap, replica = 0): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [name, value] of Object.entries(service.environment)) {
    let local = value.replace(/(\w+:\/\/)([a-z][a-z0-9_-]*):(\d+)/g, (match, scheme: string, host: string, port: string) => {
      const target = services.get(host);
      if (target === undefined) return match; // not a compose hostname (a real API URL, say)
      const containerPort = parsePort(port);
      if (!target.containerPorts.includes(containerPort)) throw new Error(`${service.name}.${name} points at ${host}:${port}, which ${host} does not expose`);
      return `${scheme}127.0.0.1:${portOf(host, containerPort)}`;
    });
    if ((name === 'PORT' || name.endsWith('_PORT')) && service.containerPorts.includes(Number(value))) local = String(portOf(service.name, Number(value), replica));
    environment[name] = local;
  }
  return environment;
}

/** The healthcheck's command for a local process, or undefined when the service has none. */
export function localHealthcheck(service: ComposeService, portOf: PortMap, replica = 0): string[] | undefined {
  const test = service.spec.healthcheck?.test;
  if (test === undefined) return undefined;
  if (test[0] !== 'CMD') throw new Error(`${service.name}: only CMD healthchecks are mapped, got ${test[0]}`);
  return test.slice(1).map((arg) => {
    if (/^\d+$/.test(arg) && service.containerPorts.includes(Number(arg))) return String(portOf(service.name, Number(arg), replica));
    return arg.replace(/\b(127\.0\.0\.1|localhost):(\d+)\b/g, (match, _host: string, port: string) =>
      service.containerPorts.includes(Number(port)) ? `127.0.0.1:${portOf(service.name, Number(port), replica)}` : match,
    );
  });
}

/** The image's command as declared in the Dockerfile's last stage, and how it runs here. */
export interface ImageCommand {
  /** e.g. `/app/services/worker`. */
  workdir: string;
  /** e.g. `["node", "dist/main.js"]`. */
  cmd: string[];
  entrypoint: string[];
  /** The repository path of the compiled entry (`services/worker/dist/main.js`). */
  distEntry: string;
  /** Its TypeScript source, run through tsx (`services/worker/src/main.ts`). */
  sourceEntry: string;
  /** The workspace folder (`services/worker`), whose `npm start` must be the same command. */
  workspace: string;
  local: { command: string; args: string[] };
}

/** Where the repository is copied in the image (`WORKDIR /app` + `COPY . .`). */
const IMAGE_REPO_ROOT = '/app';

/** Reads the Dockerfile of a built service and maps its last stage's WORKDIR + CMD to a local command. */
export function imageCommand(service: ComposeService): ImageCommand {
  const build = service.spec.build;
  if (build === undefined) throw new Error(`${service.name} has no build section`);
  const args = toRecord(build.args);
  const text = readFileSync(join(REPO_ROOT, build.context, build.dockerfile ?? 'Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'));
  const lastStage = lines.slice(lines.findLastIndex((line) => /^FROM\s/i.test(line)));
  const expand = (value: string) => value.replace(/\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?/g, (_m, name: string) => args[name] ?? '');
  let workdir = '/';
  let cmd: string[] = [];
  let entrypoint: string[] = [];
  for (const line of lastStage) {
    const [instruction = '', ...rest] = line.split(/\s+/);
    const argument = rest.join(' ');
    if (/^WORKDIR$/i.test(instruction)) workdir = expand(argument).startsWith('/') ? expand(argument) : `${workdir}/${expand(argument)}`;
    if (/^CMD$/i.test(instruction)) cmd = stringArray(JSON.parse(argument), `${service.name} CMD`);
    if (/^ENTRYPOINT$/i.test(instruction)) entrypoint = stringArray(JSON.parse(argument), `${service.name} ENTRYPOINT`);
  }
  const [program, script] = cmd;
  if (program !== 'node' || script === undefined) throw new Error(`${service.name}: expected CMD ["node", "<file>"], got ${JSON.stringify(cmd)}`);
  if (!workdir.startsWith(`${IMAGE_REPO_ROOT}/`)) throw new Error(`${service.name}: WORKDIR ${workdir} is outside ${IMAGE_REPO_ROOT}`);
  const workspace = workdir.slice(IMAGE_REPO_ROOT.length + 1);
  const distEntry = `${workspace}/${script}`;
  const match = /^(.*)\/dist\/(.+)\.js$/.exec(distEntry);
  if (!match) throw new Error(`${service.name}: ${distEntry} is not a dist/*.js entry`);
  const sourceEntry = `${match[1]}/src/${match[2]}.ts`;
  return { workdir, cmd, entrypoint, distEntry, sourceEntry, workspace, local: entryCommand(sourceEntry) };
}
