import { sharedConfig } from '../../vitest.shared.ts';

// One file at a time: the fleet files each run four child processes and measure delivered tokens per minute, which
// another fleet competing for two cores would distort.
export default sharedConfig({ fileParallelism: false });
