import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/support/global-setup.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Outside the Functions host, @azure/functions warns that it skips registration; the tests serve the
    // routes themselves, so those lines are noise.
    onConsoleLog: (log) => !/Skipping call to register function|test mode/.test(log),
  },
});
