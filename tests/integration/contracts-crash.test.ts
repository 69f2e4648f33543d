import { describe, expect, it } from 'vitest';
import { crashActivation } from '../support/contracts.js';
import { azuriteTables } from '../support/stores.js';

/** The crash-point runs of tests/unit/contracts.test.ts on Azurite (fresh tables for every run). */
describe('contracts on Azurite: a storage failure at any call of activation and invoicing', () => {
  it.each([
    ['before', 'request'],
    ['after', 'request'],
    ['before', 'timer'],
    ['after', 'timer'],
  ] as const)(
    'failing call n (%s), finished by the %s: one contract, one audit row, one invoice per period',
    async (mode, recovery) => {
      const run = await crashActivation(azuriteTables, mode, recovery);
      expect(run.failures).toEqual([]);
      expect(run.crashed).toBeGreaterThanOrEqual(8);
    },
    120_000,
  );
});
