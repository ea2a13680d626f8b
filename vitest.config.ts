import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'src/**/*.test.ts', 'packages/*/test/**/*.test.ts', 'packages/*/test/**/*.test.tsx'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // vitest's default is one worker fewer than the cores: one at a time on a 2-core machine, where
    // most of a file's time is spent waiting on servers, browsers and stores. Two files at a time.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
