import { describe, expect, it } from 'vitest';
import { crashEveryCall, SCENARIOS } from '../support/directory-scenarios.js';
import { azuriteTables } from '../support/stores.js';

/** The crash-point runs of tests/unit/directory-crash.test.ts, on Azurite (fresh tables for every run). */
describe('directory on Azurite: a failure at any storage call', () => {
  it.each(SCENARIOS)(
    '$name: the same request repeated finishes it, consistently',
    async (scenario) => {
      const run = await crashEveryCall(scenario, azuriteTables, 'retry');
      expect(run.failures).toEqual([]);
    },
    120_000,
  );
});
