import { describe, expect, it } from 'vitest';
import { crashTheChange, crashTheDrain } from '../support/feed-world.js';
import { azuriteTables } from '../support/stores.js';

/** The entitlement feed's crash runs (tests/unit/entitlement-feed.test.ts) on Azurite. */
describe('entitlement feed on Azurite: a failure at any storage call', () => {
  it('each storage call of a change failing after it took effect (answer lost), then a retry', async () => {
    expect(await crashTheChange(azuriteTables, 'after')).toEqual([]);
  }, 240_000);

  it('each storage call of a change failing before it reaches storage, then a retry', async () => {
    expect(await crashTheChange(azuriteTables, 'before')).toEqual([]);
  }, 240_000);

  it('each storage call of a drain failing, then the sweep', async () => {
    expect(await crashTheDrain(azuriteTables)).toEqual([]);
  }, 240_000);
});
