import { defineConfig } from 'vitest/config';

/**
 * One vitest setup for every workspace: internal packages resolve to their TypeScript
 * sources through the `tollgate-source` export condition, so tests never need a build.
 */
export const SOURCE_CONDITION = 'tollgate-source';

export function sharedConfig(options: { testTimeoutMs?: number; fileParallelism?: boolean } = {}) {
  return defineConfig({
    resolve: { conditions: [SOURCE_CONDITION, 'import', 'module', 'node', 'default'] },
    ssr: { resolve: { conditions: [SOURCE_CONDITION, 'import', 'node', 'default'], externalConditions: [SOURCE_CONDITION] } },
    test: {
      environment: 'node',
      include: ['test/**/*.test.ts', 'src/**/*.test.ts'],
      testTimeout: options.testTimeoutMs ?? 30_000,
      hookTimeout: 60_000,
      fileParallelism: options.fileParallelism ?? true,
      pool: 'forks',
      // the JSON report feeds the one-line total that `npm test` prints (scripts/run-tests.mjs)
      reporters: ['default', ['json', { outputFile: 'test-output/vitest.json' }]],
    },
  });
}
