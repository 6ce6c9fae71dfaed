import { createHash, randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { FaultPicker } from './faults.js';
import { KeyLimits } from './limits.js';
import { mockConfigSchema, type Limits, type MockConfig, type MockConfigInput, type MockConfigPatch } from './options.js';
import { createRng, type Rng } from './random.js';
import { RequestLog } from './request-log.js';
import { StatsRecorder } from './stats.js';

const FINGERPRINT_HEX_CHARS = 12;
/** Golden-ratio constant: derives the latency stream's seed from the fault stream's, so they differ. */
const LATENCY_SEED_SALT = 0x9e3779b9;

/** Stats and logs name a key by a short hash of it, never in clear. */
export function apiKeyFingerprint(apiKey: string): string {
  return `key_${createHash('sha256').update(apiKey).digest('hex').slice(0, FINGERPRINT_HEX_CHARS)}`;
}

/** The mutable state of one mock server, shared by its routes. */
export class MockState {
  config: MockConfig;
  #configInput: MockConfigInput;
  apiKeys: ReadonlySet<string> | undefined;
  readonly keys = new Map<string, KeyLimits>();
  readonly #fingerprints = new Map<string, string>();
  /** `keyLimits` by key fingerprint: the keys with limits of their own. */
  #ownLimits = new Map<string, Limits>();
  readonly stats: StatsRecorder;
  readonly faults: FaultPicker;
  latencyRng: Rng;
  /** The last requests as received, for tests (`GET /_mock/requests`). */
  requestLog: RequestLog;
  /** One org per mock, as if every key belonged to it. */
  readonly organizationId = randomUUID();
  /** Aborted by close(), so no latency timer outlives the server. */
  readonly active = new Set<AbortController>();

  constructor(
    configInput: MockConfigInput,
    readonly log: Logger,
  ) {
    this.#configInput = configInput;
    this.config = mockConfigSchema.parse(configInput);
    this.apiKeys = this.config.apiKeys === undefined ? undefined : new Set(this.config.apiKeys);
    this.#ownLimits = this.#limitsByFingerprint(this.config);
    this.stats = new StatsRecorder(this.config.statsWindowMs, this.nowMs(), Date.now());
    this.faults = new FaultPicker(this.config.seed);
    this.latencyRng = createRng(this.config.seed ^ LATENCY_SEED_SALT);
    this.requestLog = new RequestLog(this.config.requestLog.size, this.config.requestLog.bodyBytesMax);
  }

  /** The monotonic clock all buckets use. */
  nowMs(): number {
    return performance.now();
  }

  /** Replaces the given top-level sections; throws a ZodError (and changes nothing) when the result is invalid. */
  setConfig(patch: MockConfigPatch): MockConfig {
    const input: MockConfigInput = { ...this.#configInput, ...patch };
    const config = mockConfigSchema.parse(input);
    const limitsChanged = patch.limits !== undefined || patch.keyLimits !== undefined;
    this.#configInput = input;
    this.config = config;
    this.apiKeys = config.apiKeys === undefined ? undefined : new Set(config.apiKeys);
    this.#ownLimits = this.#limitsByFingerprint(config);
    if (limitsChanged) for (const [keyId, key] of this.keys) key.configure(this.limitsOf(keyId), this.nowMs());
    if (patch.seed !== undefined) this.#reseed();
    if (patch.requestLog !== undefined) this.requestLog = new RequestLog(config.requestLog.size, config.requestLog.bodyBytesMax);
    return config;
  }

  /** Clears stats and refills every bucket; requests in flight stay counted. */
  reset(): void {
    const nowMs = this.nowMs();
    for (const [keyId, key] of this.keys) {
      key.configure(this.limitsOf(keyId), nowMs);
      key.spentTokens = 0;
      key.maxConcurrent = key.inFlight;
    }
    this.stats.reset(this.config.statsWindowMs, nowMs, Date.now());
    this.requestLog.clear();
    this.#reseed();
  }

  #reseed(): void {
    this.faults.reset(this.config.seed);
    this.latencyRng = createRng(this.config.seed ^ LATENCY_SEED_SALT);
  }

  fingerprint(apiKey: string): string {
    let id = this.#fingerprints.get(apiKey);
    if (id === undefined) {
      id = apiKeyFingerprint(apiKey);
      this.#fingerprints.set(apiKey, id);
    }
    return id;
  }

  /** The limits of a key (by fingerprint): its own `keyLimits` entry, else `limits`. */
  limitsOf(keyId: string): Limits {
    return this.#ownLimits.get(keyId) ?? this.config.limits;
  }

  #limitsByFingerprint(config: MockConfig): Map<string, Limits> {
    return new Map(Object.entries(config.keyLimits).map(([apiKey, limits]) => [this.fingerprint(apiKey), limits]));
  }

  keyLimits(keyId: string): KeyLimits {
    let key = this.keys.get(keyId);
    if (key === undefined) {
      key = new KeyLimits(this.limitsOf(keyId), this.nowMs());
      this.keys.set(keyId, key);
    }
    return key;
  }
}
