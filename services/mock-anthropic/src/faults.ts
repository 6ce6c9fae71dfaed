import { invalidRequest, type ApiErrorSpec } from './errors.js';
import { faultKindSchema, type FaultKind, type Faults } from './options.js';
import { createRng, type Rng } from './random.js';

/** The request header that forces a fault on one request. */
export const FAULT_HEADER = 'x-mock-fault';

const RATED_FAULTS: readonly [keyof Faults, FaultKind][] = [
  ['rate429', '429'],
  ['rate529', '529'],
  ['rate500', '500'],
  ['rate504', '504'],
  ['rateMidStreamError', 'mid_stream_error'],
  ['rateReset', 'reset'],
  ['rateResetMidStream', 'reset_mid_stream'],
  ['rateSlowHeaders', 'slow_headers'],
];

/** Reads `x-mock-fault`; an unknown value is a 400 so a typo never passes silently. */
export function parseFaultHeader(value: string | string[] | undefined): FaultKind | undefined | ApiErrorSpec {
  if (value === undefined) return undefined;
  const parsed = faultKindSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  return invalidRequest(`${FAULT_HEADER}: unknown fault ${JSON.stringify(value)}; expected one of ${faultKindSchema.options.join(', ')}`);
}

/** Chooses the fault for each admitted Messages request: the header first, then the schedule, then the rates. */
export class FaultPicker {
  #admitted = 0;
  #rng: Rng;

  constructor(seed: number) {
    this.#rng = createRng(seed);
  }

  /** Restarts the schedule count and the random sequence. */
  reset(seed: number): void {
    this.#admitted = 0;
    this.#rng = createRng(seed);
  }

  pick(faults: Faults, forced: FaultKind | undefined): FaultKind | undefined {
    this.#admitted += 1;
    if (forced !== undefined) return forced;
    const scheduled = faults.schedule.find((entry) => entry.nth === this.#admitted);
    if (scheduled !== undefined) return scheduled.fault;
    let threshold = 0;
    let draw: number | undefined;
    for (const [rateName, kind] of RATED_FAULTS) {
      const rate = faults[rateName];
      if (typeof rate !== 'number' || rate === 0) continue;
      draw ??= this.#rng(); // one draw per request, and only when some rate is on
      threshold += rate;
      if (draw < threshold) return kind;
    }
    return undefined;
  }
}
