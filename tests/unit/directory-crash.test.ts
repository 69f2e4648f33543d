import { describe, expect, it } from 'vitest';
import { crashEveryCall, memoryTables, SCENARIOS } from '../support/directory-scenarios.js';

/**
 * Every directory operation, with each of its storage calls failing in turn (before it reaches
 * storage, and after it took effect with its answer lost), on the in-memory twin. The same runs on
 * Azurite are in tests/integration/directory-crash.test.ts.
 */
describe('directory: a failure at any storage call', () => {
  it.each(SCENARIOS)('$name: the same request repeated finishes it, consistently', async (scenario) => {
    const run = await crashEveryCall(scenario, memoryTables, 'retry');
    expect(run.calls).toBeGreaterThan(1);
    expect(run.failures).toEqual([]);
  });

  it.each(SCENARIOS)('$name: a DELETE of everything afterwards leaves nothing counted', async (scenario) => {
    const run = await crashEveryCall(scenario, memoryTables, 'delete-everything');
    expect(run.failures).toEqual([]);
  });
});
