import { allocationAfter } from '../access/allocation.js';
import { capabilitiesFor, lockSetInForce } from '../access/decide.js';
import type { Catalog } from '../catalog.js';
import type { OwnerId } from '../ids.js';
import { answer, commit, write } from '../storage/commit.js';
import type { EntityTable } from '../store.js';
import { listOwnedItems } from './items.js';
import { type OwnerSnapshot, type OwnerStore, withVersion } from './snapshot.js';

/**
 * Owner snapshots ready for decisions: read with one range query, and, in the rare case where the
 * stored lock set does not match the limits in force (limits changed by a row written outside the
 * commit path, or by time), repaired first through the commit path.
 */
export interface OwnerAccess {
  read(ownerId: OwnerId): Promise<OwnerSnapshot>;
}

export function createOwnerAccess(deps: {
  readonly store: OwnerStore;
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  readonly catalog: Catalog;
}): OwnerAccess {
  const { store, table, catalog } = deps;

  async function repairLocks(ownerId: OwnerId): Promise<void> {
    await commit(
      table,
      ownerId,
      async () => {
        const snapshot = await store.read(ownerId);
        const caps = capabilitiesFor(snapshot, catalog);
        if (lockSetInForce(snapshot, caps) !== 'stale') return answer(undefined);
        // Passing the limits forces a full computation from every item.
        const after = await allocationAfter(snapshot, caps.limits, { limits: caps.limits }, () =>
          listOwnedItems(table, ownerId),
        );
        return write(withVersion(snapshot, [after.action]), () => undefined);
      },
      { what: `repairing the lock set of ${ownerId}` },
    );
  }

  return {
    async read(ownerId) {
      const snapshot = await store.read(ownerId);
      if (lockSetInForce(snapshot, capabilitiesFor(snapshot, catalog)) !== 'stale') return snapshot;
      await repairLocks(ownerId);
      return store.read(ownerId);
    },
  };
}
