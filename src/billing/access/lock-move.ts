import type { Catalog } from '../catalog.js';
import type { OwnerSnapshot } from '../owner/snapshot.js';
import { type AllocationAfter, allocationAfter } from './allocation.js';
import { capabilitiesFor, type SnapshotChange } from './decide.js';
import { lockBasis } from './locks.js';

/**
 * The allocation row (counts and lock set) once `change` is in force at `at`: `undefined` when the limits
 * locks are measured by stay the same. Every change that can move limits (a subscription sync, a
 * contract, overrides) writes it in its own transaction, so over-limit items lock, never go; the change
 * preview reads the lock set from the same computation, so both name the same items.
 */
export async function allocationForChange(
  snapshot: OwnerSnapshot,
  catalog: Catalog,
  change: SnapshotChange,
  at: Date,
  listItems: Parameters<typeof allocationAfter>[3],
): Promise<AllocationAfter | undefined> {
  const before = capabilitiesFor(snapshot, catalog).limits;
  const after = capabilitiesFor(snapshot, catalog, change, at).limits;
  if (lockBasis(before) === lockBasis(after)) return undefined;
  return allocationAfter(snapshot, before, { limits: after }, listItems);
}
