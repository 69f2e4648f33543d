import { allocationForChange } from '../access/lock-move.js';
import type { Catalog } from '../catalog.js';
import { listOwnedItems } from '../owner/items.js';
import { CONTRACT_ROW } from '../owner/keys.js';
import { chunkedJson } from '../owner/rows.js';
import type { OwnerSnapshot } from '../owner/snapshot.js';
import type { EntityTable, TransactionAction } from '../store.js';
import type { ContractState } from './model.js';

/** The write of the contract row: create, or replace on the ETag the snapshot read. */
export function contractRowAction(snapshot: OwnerSnapshot, next: ContractState): TransactionAction {
  const props = chunkedJson('contract', next);
  const stored = snapshot.contract;
  return stored === undefined
    ? { kind: 'create', rowKey: CONTRACT_ROW, props }
    : { kind: 'update', rowKey: CONTRACT_ROW, props, etag: stored.etag };
}

/**
 * The lock set moved to the limits in force after the contract becomes `next` (`undefined`: no contract),
 * when they differ from those before, for the same transaction: over-limit items lock, nothing is deleted.
 */
export async function lockMoveFor(
  table: EntityTable,
  catalog: Catalog,
  snapshot: OwnerSnapshot,
  next: ContractState | undefined,
): Promise<TransactionAction[]> {
  const allocation = await allocationForChange(snapshot, catalog, { contract: next }, snapshot.readAt, () =>
    listOwnedItems(table, snapshot.ownerId),
  );
  return allocation ? [allocation.action] : [];
}
