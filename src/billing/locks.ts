import { allocationAfter } from './access/allocation.js';
import { capabilitiesFor, lockSetInForce, StaleLockSetError } from './access/decide.js';
import { hasLocks, type KeepPreferences, type LockReport, lockReport } from './access/locks.js';
import { auditAction } from './audit/entry.js';
import type { Catalog } from './catalog.js';
import type { Clock } from './clock.js';
import { validationError } from './errors.js';
import type { OwnerId } from './ids.js';
import { listOwnedItems } from './owner/items.js';
import { KEEP_ROW } from './owner/keys.js';
import type { OwnerAccess } from './owner/owner-access.js';
import { chunkedJson } from './owner/rows.js';
import { type OwnerSnapshot, withVersion } from './owner/snapshot.js';
import { commit, write } from './storage/commit.js';
import { type EntityTable, TABLE_LIMITS, type TransactionAction } from './store.js';

export type { KeepPreferences, LockedItem, LockReport } from './access/locks.js';

/**
 * Over-limit resources are locked, never deleted (`access/locks.ts` has the rule). The lock set is kept
 * in the owner's snapshot by every change that can move it; this is the owner's view of it and the
 * place to choose what to keep.
 */
export interface Locks {
  /** What is locked, with where it lives (one listing of the owner's items, only when something is). */
  report(snapshot: OwnerSnapshot): Promise<LockReport>;
  preferences(ownerId: OwnerId): Promise<KeepPreferences>;
  /** Sets the owner's picks (each list replaces the stored one) and moves the lock set with them. */
  setPreferences(
    ownerId: OwnerId,
    keep: Partial<KeepPreferences>,
    /** Who asked (the token's `sub`) and the request's id, for the audit row. */
    by: { readonly actor: string; readonly requestId: string },
  ): Promise<KeepPreferences>;
}

/**
 * The picks live in the snapshot, one string property per list: a list must fit one (Table Storage's
 * 32,768 characters of JSON, about 1,500 ids of 20 characters). Picks beyond a plan's limits change
 * nothing, so this bounds only lists no plan can use.
 */
export const KEEP_LIST_MAX_CHARS = TABLE_LIMITS.stringLength;

function keepAction(snapshot: OwnerSnapshot, keep: KeepPreferences): TransactionAction {
  for (const kind of ['workflows', 'credentials'] as const) {
    const size = JSON.stringify(keep[kind]).length;
    if (size > KEEP_LIST_MAX_CHARS) {
      throw validationError(
        'keep_list_too_large',
        `The ${kind} to keep take ${size} characters stored; at most ${KEEP_LIST_MAX_CHARS} fit (about ${Math.floor(
          (KEEP_LIST_MAX_CHARS / size) * keep[kind].length,
        )} ids of this length). Name only as many as the plan keeps.`,
        [{ path: kind, message: `at most ${KEEP_LIST_MAX_CHARS} characters of JSON` }],
      );
    }
  }
  const props = {
    ...chunkedJson('workflows', keep.workflows),
    ...chunkedJson('credentials', keep.credentials),
  };
  return snapshot.keep.etag === undefined
    ? { kind: 'create', rowKey: KEEP_ROW, props }
    : { kind: 'update', rowKey: KEEP_ROW, props, etag: snapshot.keep.etag };
}

export function createLocks(deps: {
  readonly owners: OwnerAccess;
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  readonly catalog: Catalog;
  readonly clock: Clock;
}): Locks {
  const { owners, table, catalog, clock } = deps;
  return {
    async report(snapshot) {
      const set = lockSetInForce(snapshot, capabilitiesFor(snapshot, catalog));
      if (set === 'stale') throw new StaleLockSetError(snapshot.ownerId);
      if (!hasLocks(set)) return { workflows: [], credentials: [] };
      return lockReport(set, await listOwnedItems(table, snapshot.ownerId), snapshot.keep.picks);
    },

    async preferences(ownerId) {
      return (await owners.read(ownerId)).keep.picks;
    },

    setPreferences(ownerId, keep, by) {
      return commit(
        table,
        ownerId,
        async () => {
          const snapshot = await owners.read(ownerId);
          const current = snapshot.keep.picks;
          const next: KeepPreferences = {
            workflows: keep.workflows ?? current.workflows,
            credentials: keep.credentials ?? current.credentials,
          };
          const action = keepAction(snapshot, next);
          const caps = capabilitiesFor(snapshot, catalog);
          const allocation = await allocationAfter(snapshot, caps.limits, { keep: next }, () =>
            listOwnedItems(table, ownerId),
          );
          const audit = auditAction(
            {
              at: clock.now().toISOString(),
              kind: 'lock_picks_changed',
              actor: { kind: 'user', id: by.actor },
              cause: { kind: 'action', id: by.requestId, type: 'locks.keep' },
              before: current,
              after: next,
            },
            by.requestId,
          );
          return write(withVersion(snapshot, [action, allocation.action, audit]), () => next);
        },
        { what: `setting what ${ownerId} keeps` },
      );
    },
  };
}
