import { describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { crashEveryCall, SCENARIOS, type Tables } from '../support/directory-scenarios.js';
import { uniquePrefix } from '../support/harness.js';

/** The crash-point runs of tests/unit/directory-crash.test.ts, on Azurite (fresh tables for every run). */
const azureTables = (): Tables => {
  const connection = { kind: 'connectionString', connectionString: inject('azuriteConnection') } as const;
  const prefix = uniquePrefix();
  return {
    directory: createAzureTable(connection, `${prefix}directory`),
    billing: createAzureTable(connection, `${prefix}billing`),
  };
};

describe('directory on Azurite: a failure at any storage call', () => {
  it.each(SCENARIOS)(
    '$name: the same request repeated finishes it, consistently',
    async (scenario) => {
      const run = await crashEveryCall(scenario, azureTables, 'retry');
      expect(run.failures).toEqual([]);
    },
    120_000,
  );
});
