import type { OwnerSnapshot } from '../owner/snapshot.js';
import type { TransactionAction } from '../store.js';

/**
 * Which snapshot a version bump was decided from. `versionAction` records it here when it builds the
 * bump, and the billing table's outbox (`outbox.ts`) looks it up when the transaction carrying that very
 * action object is written: the "before" of an entitlement change travels with the transaction without
 * any writer passing it along (so no writer can forget it). Keyed weakly by the action object: nothing is
 * kept once the transaction is gone.
 */
const bases = new WeakMap<TransactionAction, OwnerSnapshot>();

export function rememberBasis(action: TransactionAction, snapshot: OwnerSnapshot): void {
  bases.set(action, snapshot);
}

/** The snapshot a version action was built from, if it was built by `versionAction`. */
export const basisOf = (action: TransactionAction): OwnerSnapshot | undefined => bases.get(action);
