import type { OwnerId } from '../ids.js';
import { chunkedJson, definedProps } from '../owner/rows.js';
import type { EntityProps, TransactionAction } from '../store.js';

/**
 * One shape for every audit row: who changed what, why, and the state before and after. A row lives in
 * the partition of the owner it concerns, written in the same transaction as the change it records, so a
 * change and its audit row commit together or not at all. Changes that concern no single owner (a cohort
 * enforcement rule) are audited in `GLOBAL_AUDIT_PARTITION`.
 *
 * Row key: `audit|n|<inverted instant>|<unique>` (see `auditRowKey`). Table Storage lists keys ascending
 * only, so the instant is inverted (newest sorts first) and an owner's trail reads newest first with one
 * range query, a time window being a key range. `unique` names the cause (an event id, a request id, a
 * timer run), so two changes in one millisecond never share a key. This module is the one place that
 * decides audit keys; writers only name the entry and its `unique`.
 *
 * Rows written before this layout (`audit|<ISO instant>|…`, `audit|duplicate|<sub>`) stay where they are
 * and are read by `parse.ts`; nothing writes that shape any more.
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

/** The prefix of every row key this module writes (older rows sort elsewhere under `audit|`). */
export const AUDIT_KEY_PREFIX = 'audit|n|';

/** Inverted instants count down from here: 13 digits last until the year 2286. */
const INVERT_FROM = 9_999_999_999_999;

/** Milliseconds since the epoch, inverted and zero-padded so that newer instants sort first. */
export function invertedTime(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms > INVERT_FROM) throw new RangeError(`No inverted time for ${ms}`);
  return String(INVERT_FROM - ms).padStart(13, '0');
}

/** The instant (ms) an inverted time stands for. */
export const fromInvertedTime = (inverted: string): number => INVERT_FROM - Number(inverted);

function instantOf(at: string): number {
  const ms = Date.parse(at);
  if (Number.isNaN(ms)) throw new RangeError(`Audit instant "${at}" is not an ISO date`);
  return ms;
}

/** The row key of the audit row of a change at `at`, named `unique` (see the module comment). */
export const auditRowKey = (at: string, unique: string) =>
  `${AUDIT_KEY_PREFIX}${invertedTime(instantOf(at))}|${unique}`;

/** An audit row's write, for a transaction. */
export type AuditWrite<K extends 'create' | 'upsert'> = Extract<TransactionAction, { readonly kind: K }>;

/** The create of an audit row, for the change's own transaction. A retry with the same `unique` and
 * instant fails on it as on any marker. */
export function auditAction(entry: AuditEntry, unique: string): AuditWrite<'create'> {
  return { kind: 'create', rowKey: auditRowKey(entry.at, unique), props: auditProps(entry) };
}

/**
 * An audit row that is written more than once, each write replacing the last: a step recorded before an
 * outside call and completed after it (a duplicate subscription's cancellation). The key must be the same
 * for every write without a read, so it sorts at `sortAt`, an instant every writer knows (for a duplicate,
 * when the second subscription was created); `entry.at` says when this write happened.
 */
export function auditUpsertAction(entry: AuditEntry, unique: string, sortAt: string): AuditWrite<'upsert'> {
  return { kind: 'upsert', rowKey: auditRowKey(sortAt, unique), props: auditProps(entry) };
}

/** Property names `auditProps` writes itself; `details` may not use them. */
export const RESERVED_AUDIT_PROPS: ReadonlySet<string> = new Set([
  'at',
  'kind',
  'actorKind',
  'actor',
  'causeKind',
  'causeId',
  'causeType',
  'reason',
  'revertible',
  'revertOf',
]);
/** `before`, `after` and their continuation chunks (`before1`, …). */
export const STATE_PROP = /^(before|after)\d*$/;

function auditProps(entry: AuditEntry): EntityProps {
  for (const name of Object.keys(entry.details ?? {})) {
    if (RESERVED_AUDIT_PROPS.has(name) || STATE_PROP.test(name))
      throw new Error(`Audit detail "${name}" would overwrite a field of the audit row; rename it`);
  }
  return {
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
