import { createRequire } from 'node:module';

/** One case of fixtures/bad-inputs.cjs: the call, the class and code it should throw, and what it threw. */
export interface Case {
  call: string;
  expected: { className: string; code: string };
  threw: boolean;
  name?: string;
  code?: string;
  isTollgateError?: boolean;
  isExpectedClass?: boolean;
  message?: string;
}
export type BadInputs = (modules: { limiterModule: unknown; anthropicModule: unknown; queueModule: unknown; env: Record<string, string> }) => Promise<Case[]>;

export const badInputs = createRequire(import.meta.url)('./fixtures/bad-inputs.cjs') as BadInputs;

/** What every case must show: the documented class (by name and instanceof), a TollgateError, the stable code. */
export function asExpected(result: Case): Case {
  return { call: result.call, expected: result.expected, threw: true, name: result.expected.className, code: result.expected.code, isTollgateError: true, isExpectedClass: true };
}
