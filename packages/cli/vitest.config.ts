import { sharedConfig } from '../../vitest.shared.ts';

// each test runs the CLI as a process against a live fleet: give the processes time on 2 busy cores
export default sharedConfig({ testTimeoutMs: 120_000, fileParallelism: false });
