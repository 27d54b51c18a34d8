import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // slow soak/crash runs: npm run test:slow (also run by .ci/run)
    exclude: ['**/node_modules/**', 'test/**/*.slow.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
  },
});
