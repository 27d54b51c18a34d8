import { defineConfig } from 'vitest/config';

/** The slow suites (`npm run test:slow`): the kill -9 crash test. Not part of `npm test`. */
export default defineConfig({
  test: {
    include: ['test/durability/crash.slow.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 30_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
