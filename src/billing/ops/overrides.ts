import { allocationForChange } from '../access/lock-move.js';
import { type OwnerOverrides, overridesActive, ownerOverridesSchema } from '../access/overrides.js';
import type { Catalog } from '../catalog.js';
import { listOwnedItems } from '../owner/items.js';
import { OVERRIDES_ROW } from '../owner/keys.js';
import type { OwnerAccess } from '../owner/owner-access.js';
import type { EntityTable } from '../store.js';
import { createOwnerSettings, type OwnerSettings } from './owner-setting.js';

/**
 * `PUT/GET/DELETE /api/ops/owners/{ownerId}/overrides`: limits and flags for one owner on top of its plan
 * (`access/overrides.ts` applies them; this module stores them). A change that moves the limits the lock
 * set is computed for writes the new lock set in the same transaction, as a plan change does: a lowered
 * limit locks items (the owner's picks kept first, then the oldest), never deletes them. An expiry needs
 * no write: the next read finds the lock set's basis stale and repairs it (`owner/owner-access.ts`).
 */
export type Overrides = OwnerSettings<OwnerOverrides>;

export function createOverrides(deps: {
  /** The owner-partitioned billing table. */
  readonly table: EntityTable;
  readonly owners: Pick<OwnerAccess, 'read'>;
  readonly catalog: Catalog;
  readonly now: () => Date;
}): Overrides {
  const { table, catalog } = deps;
  return createOwnerSettings<OwnerOverrides>(
    {
      name: 'override',
      rowKey: OVERRIDES_ROW,
      property: 'overrides',
      schema: ownerOverridesSchema,
      revertible: 'override',
      stored: (snapshot) => snapshot.overrides,
      refuse: (value, now) =>
        value.expiresAt !== null && Date.parse(value.expiresAt) <= now.getTime()
          ? `expiresAt ${value.expiresAt} is not in the future.`
          : undefined,
      lapsed: (value, now) => !overridesActive(value, now),
      async alongside(snapshot, next) {
        const allocation = await allocationForChange(
          snapshot,
          catalog,
          { overrides: next },
          snapshot.readAt,
          () => listOwnedItems(table, snapshot.ownerId),
        );
        return allocation ? [allocation.action] : [];
      },
    },
    deps,
  );
}
