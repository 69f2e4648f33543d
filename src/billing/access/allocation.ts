import type { ItemKind } from '../owner/keys.js';
import { ALLOCATION_ROW } from '../owner/keys.js';
import { chunkedJson } from '../owner/rows.js';
import type { OwnerSnapshot } from '../owner/snapshot.js';
import type { TransactionAction } from '../store.js';
import {
  computeLockSet,
  emptyLockSet,
  type KeepPreferences,
  type LockLimits,
  type LockSet,
  lockBasis,
  lockSetAfterAdd,
  lockSetAfterRemove,
  type OwnedItem,
} from './locks.js';

/**
 * The allocation row (`s|o|alloc`): the owner's workflow and credential counts and the lock set, kept
 * in step with the items they describe in the same transaction. Every change that can move a lock
 * (an item added or removed, new limits, new picks) writes this row on condition of the ETag it read,
 * so two such changes can never both decide from the same state.
 */

export interface AllocationChange {
  readonly workflows?: number;
  readonly credentials?: number;
  /** Change in each organization's workflow count. */
  readonly orgWorkflows?: ReadonlyMap<string, number>;
  /** One item added or removed (lets the lock set follow without listing every item). */
  readonly added?: { readonly kind: ItemKind; readonly item: OwnedItem };
  readonly removed?: { readonly kind: ItemKind; readonly item: Pick<OwnedItem, 'id' | 'workspace'> };
  /** Many items removed at once (`<kind>:<id>`), as a DELETE of an organization does. */
  readonly removedMany?: ReadonlySet<string>;
  /** Limits that apply after the change, when it changes them (a subscription change). */
  readonly limits?: LockLimits;
  /** Picks that apply after the change, when it changes them. */
  readonly keep?: KeepPreferences;
}

export interface AllocationAfter {
  readonly workflows: number;
  readonly credentials: number;
  readonly locks: LockSet;
  readonly action: TransactionAction;
}

/** Whether every scope a lock can come from is within its limit. */
export function withinLockLimits(
  counts: { readonly workflows: number; readonly credentials: number; readonly orgs: Iterable<number> },
  limits: LockLimits,
): boolean {
  if (limits.workflows !== null && counts.workflows > limits.workflows) return false;
  if (limits.credentials !== null && counts.credentials > limits.credentials) return false;
  const perOrg = limits.workflows_per_org;
  if (perOrg !== null) for (const n of counts.orgs) if (n > perOrg) return false;
  return true;
}

/** The organizations' workflow counts after a change, from the snapshot. */
function orgCountsAfter(snapshot: OwnerSnapshot, change: AllocationChange): number[] {
  const counts = new Map<string, number>();
  for (const [orgId, org] of snapshot.orgs) counts.set(orgId, org.row.workflows);
  for (const [orgId, delta] of change.orgWorkflows ?? []) counts.set(orgId, (counts.get(orgId) ?? 0) + delta);
  return [...counts.values()];
}

/**
 * The allocation row after `change`, as a conditional write. Lists every item (with `listItems`) only
 * when a scope is over its limit and the lock set cannot simply follow the change.
 */
export async function allocationAfter(
  snapshot: OwnerSnapshot,
  currentLimits: LockLimits,
  change: AllocationChange,
  listItems: () => Promise<{
    readonly workflows: readonly OwnedItem[];
    readonly credentials: readonly OwnedItem[];
  }>,
): Promise<AllocationAfter> {
  const before = snapshot.allocation;
  const limits = change.limits ?? currentLimits;
  const keep = change.keep ?? snapshot.keep.picks;
  const workflows = before.workflows + (change.workflows ?? 0);
  const credentials = before.credentials + (change.credentials ?? 0);
  let locks: LockSet | undefined;
  if (withinLockLimits({ workflows, credentials, orgs: orgCountsAfter(snapshot, change) }, limits)) {
    locks = emptyLockSet(limits);
  } else if (
    before.locks !== undefined &&
    before.locks.basis === lockBasis(limits) &&
    change.limits === undefined &&
    change.keep === undefined &&
    change.removedMany === undefined
  ) {
    const scopeCounts = (orgId: string | undefined) => ({
      workflows: before.workflows,
      credentials: before.credentials,
      inOrg: orgId === undefined ? 0 : (snapshot.orgs.get(orgId)?.row.workflows ?? 0),
    });
    const orgOf = (workspace: OwnedItem['workspace']) =>
      workspace.kind === 'org' ? workspace.orgId : undefined;
    if (change.added && !change.removed) {
      const { kind, item } = change.added;
      locks = lockSetAfterAdd(before.locks, kind, item, scopeCounts(orgOf(item.workspace)), limits, keep);
    } else if (change.removed && !change.added) {
      const { kind, item } = change.removed;
      locks = lockSetAfterRemove(before.locks, kind, item, scopeCounts(orgOf(item.workspace)), limits);
    } else if (!change.added && !change.removed) locks = before.locks;
  }
  if (locks === undefined) {
    const listed = await listItems();
    const apply = (kind: ItemKind, list: readonly OwnedItem[]) => {
      let out = list.filter((item) => !change.removedMany?.has(`${kind}:${item.id}`));
      if (change.removed?.kind === kind) out = out.filter((item) => item.id !== change.removed?.item.id);
      if (change.added?.kind === kind)
        out = [...out.filter((item) => item.id !== change.added?.item.id), change.added.item];
      return out;
    };
    locks = computeLockSet(
      {
        workflows: apply('workflow', listed.workflows),
        credentials: apply('credential', listed.credentials),
      },
      limits,
      keep,
    );
  }
  const props = { workflows, credentials, ...chunkedJson('locks', locks) };
  const action: TransactionAction =
    before.etag === undefined
      ? { kind: 'create', rowKey: ALLOCATION_ROW, props }
      : { kind: 'update', rowKey: ALLOCATION_ROW, props, etag: before.etag };
  return { workflows, credentials, locks, action };
}
