import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Live-PostgreSQL tests start clusters of their own; two files at a time fit 2 cores.
    maxWorkers: 2,
  },
});
