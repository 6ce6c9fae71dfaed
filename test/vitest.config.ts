import { defineConfig, mergeConfig } from 'vitest/config';
import { sharedConfig } from '../vitest.shared.ts';

// whole fleets of processes per test file: one file at a time on 2 cores
export default mergeConfig(
  sharedConfig({ testTimeoutMs: 180_000, fileParallelism: false }),
  defineConfig({
    test: {
      include: [
        'end-to-end/**/*.test.ts',
        'chaos/**/*.test.ts',
        'packaging/**/*.test.ts',
        'security/**/*.test.ts',
        'deploy/**/*.test.ts',
        'clients/**/*.test.ts',
        'docs/**/*.test.ts',
      ],
    },
  }),
);
