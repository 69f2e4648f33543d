import type { OwnerId } from '../ids.js';
import { chunkedJson, definedProps } from '../owner/rows.js';
import type { TransactionAction } from '../store.js';

/**
 * One shape for every audit row: who changed what, why, and the state before and after. A row lives in
 * the partition of the owner it concerns, written in the same transaction as the change it records, so a
 * change and its audit row commit together or not at all. Changes that concern no single owner (a cohort
 * enforcement rule) are audited in `GLOBAL_AUDIT_PARTITION`.
 *
 * Row key: `audit|<ISO instant>|<unique>`; `unique` names the cause (an event id, a request id, a timer
 * run), so a retried change writes the same key and the create refuses a second row.
 */

export const AUDIT_PREFIX = 'audit|';
/** Owner ids cannot contain `|` (`ids.ts`), so this partition is never an owner's. */
export const GLOBAL_AUDIT_PARTITION = 'ops|global';

/** Who made a change. `id`: the token's `sub` for a user, a service or an admin; a fixed name otherwise. */
export const AUDIT_ACTOR_KINDS = [
  'stripe',
  'user',
  'service',
  'admin',
  'reconciler',
  'seat_sync',
  'timer',
] as const;
export type AuditActorKind = (typeof AUDIT_ACTOR_KINDS)[number];

/** What set the change going: a Stripe event, an API request, a reconciler run, a seat sync, a timer run. */
export const AUDIT_CAUSE_KINDS = ['event', 'action', 'admin', 'reconcile', 'seat_sync', 'timer'] as const;
export type AuditCauseKind = (typeof AUDIT_CAUSE_KINDS)[number];

/** Admin-made changes that `POST /api/ops/audit/{id}/revert` can undo by applying their `before`. */
export const REVERTIBLE_KINDS = ['override', 'contract', 'enforcement', 'cohort_enforcement'] as const;
export type RevertibleKind = (typeof REVERTIBLE_KINDS)[number];

export interface AuditEntry {
  /** ISO instant of the change. */
  readonly at: string;
  /** What changed, in snake case: `subscription_changed`, `override_set`, `seats_synced`, … */
  readonly kind: string;
  readonly actor: { readonly kind: AuditActorKind; readonly id: string };
  readonly cause: { readonly kind: AuditCauseKind; readonly id: string; readonly type?: string | undefined };
  /** Required for admin changes (1 to 500 characters). */
  readonly reason?: string | undefined;
  /** JSON-serializable state before and after; `null` when there was none. */
  readonly before: unknown;
  readonly after: unknown;
  /** Set on admin changes that can be reverted. */
  readonly revertible?: RevertibleKind | undefined;
  /** The audit id of the row this change reverted. */
  readonly revertOf?: string | undefined;
  /** Flat extra facts (a subscription id, a refund id, an amount). */
  readonly details?: Readonly<Record<string, string | number | boolean | undefined>> | undefined;
}

export const auditRowKey = (at: string, unique: string) => `${AUDIT_PREFIX}${at}|${unique}`;

/** The create of an audit row, for the change's own transaction. */
export function auditAction(entry: AuditEntry, unique: string): TransactionAction {
  return {
    kind: 'create',
    rowKey: auditRowKey(entry.at, unique),
    props: {
      ...definedProps({
        ...entry.details,
        at: entry.at,
        kind: entry.kind,
        actorKind: entry.actor.kind,
        actor: entry.actor.id,
        causeKind: entry.cause.kind,
        causeId: entry.cause.id,
        causeType: entry.cause.type,
        reason: entry.reason,
        revertible: entry.revertible,
        revertOf: entry.revertOf,
      }),
      ...chunkedJson('before', entry.before ?? null),
      ...chunkedJson('after', entry.after ?? null),
    },
  };
}

/**
 * Undoes one kind of admin change by applying its `before` as a new admin change (audited with
 * `revertOf`). Implemented by the module that owns the change (overrides, contracts, enforcement) and
 * registered with the revert endpoint.
 */
export interface RevertHandler {
  readonly kind: RevertibleKind;
  revert(input: {
    /** `undefined` for a change audited in `GLOBAL_AUDIT_PARTITION`. */
    readonly ownerId: OwnerId | undefined;
    readonly before: unknown;
    /** The admin's `sub`. */
    readonly actor: string;
    readonly reason: string;
    /** The audit id of the row being reverted. */
    readonly revertOf: string;
    readonly requestId: string;
  }): Promise<void>;
}
