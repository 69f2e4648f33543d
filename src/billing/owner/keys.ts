import type { MeterName } from '../catalog.js';
import type { OrgId, UserId, Workspace } from '../ids.js';
import { workspaceKey } from '../ids.js';
import { prefixEnd, type RowKeyRange } from '../store.js';

/**
 * Row keys of a billing owner's partition in the `billing` table (PartitionKey = owner id). The layout
 * and its reasons are in docs/decisions/0004-owner-snapshot.md.
 *
 * The snapshot: every row a decision needs, read with one range query.
 * - `s|c|<periodStart>|<meter>|<periodKey>`  usage counter of one period (start as `YYYYMMDDTHHMMSS`)
 * - `s|o|alloc`                              workflow and credential counts, and the lock set
 * - `s|o|bal`                                credit balance
 * - `s|o|contract`                           the enterprise contract (`contracts/model.ts`)
 * - `s|o|keep`                               the owner's picks of what to keep when over a limit
 * - `s|o|meta`                               schema marker, written when an owner's old rows were migrated
 * - `s|o|org|<orgId>`                        one organization: name, created, its counts, deletion mark
 * - `s|o|enf`                                per-owner enforcement modes (ops setting)
 * - `s|o|ovr`                                per-owner overrides of limits and flags (ops setting)
 * - `s|o|seats`                              distinct people across the owner's organizations
 * - `s|o|seatcap`                            the owner's optional cap on billable seats (`maxSeats`)
 * - `s|o|sub`                                subscription state
 * - `s|o|ver`                                the snapshot's version: every change to a row above bumps it;
 *                                            `createdAt`, the owner's creation instant, written with its first
 *                                            state row
 *
 * Counters sort first, by period start, so the range can start at the oldest period that can still be
 * current: old periods stay where history and rollover find them without being read by every decision.
 *
 * The items the counts count (never read by a decision; listed only to compute locks and delete
 * organizations):
 * - `item|workflow|<workspace>|<id>`, `item|credential|<workspace>|<id>`  one row per item where it lives
 * - `member|<orgId>|<userId>`  a membership; `seat|<userId>`  how many of the owner's orgs a person is in
 */

export const SNAPSHOT_PREFIX = 's|';
export const COUNTER_PREFIX = 's|c|';
export const STATE_PREFIX = 's|o|';

export const SUBSCRIPTION_ROW = 's|o|sub';
export const BALANCE_ROW = 's|o|bal';
export const CONTRACT_ROW = 's|o|contract';
export const ALLOCATION_ROW = 's|o|alloc';
export const SEATS_ROW = 's|o|seats';
export const SEAT_CAP_ROW = 's|o|seatcap';
export const KEEP_ROW = 's|o|keep';
export const META_ROW = 's|o|meta';
export const OVERRIDES_ROW = 's|o|ovr';
export const ENFORCEMENT_ROW = 's|o|enf';
export const VERSION_ROW = 's|o|ver';
export const ORG_PREFIX = 's|o|org|';
export const orgRowKey = (orgId: OrgId) => `${ORG_PREFIX}${orgId}`;

/**
 * Longer than any usage window that can contain "now", so its counter is always inside the snapshot
 * range. Windows are a month (`periods.ts`: a yearly plan's allowance is monthly too), except that a
 * monthly plan's window is Stripe's stored period, which only a trial stretches; a year is ample room,
 * and covers the yearly periods that counters written before monthly windows are keyed by.
 */
export const LONGEST_PERIOD_MS = 367 * 86_400_000;

/** `2026-11-15T12:00:00.000Z` -> `20261115T120000`: sortable, and the form billing-period keys use. */
export function compactInstant(at: Date): string {
  return at.toISOString().slice(0, 19).replace(/[-:]/g, '');
}

export const counterRowKey = (meter: MeterName, period: { readonly key: string; readonly start: Date }) =>
  `${COUNTER_PREFIX}${compactInstant(period.start)}|${meter}|${period.key}`;

/** The snapshot's rows: counters of periods that may still be current, and every state row. */
export function snapshotRange(now: Date): RowKeyRange {
  return {
    from: `${COUNTER_PREFIX}${compactInstant(new Date(now.getTime() - LONGEST_PERIOD_MS))}`,
    to: prefixEnd(STATE_PREFIX),
  };
}

export type ItemKind = 'workflow' | 'credential';

export const itemPrefix = (kind: ItemKind) => `item|${kind}|`;
export const itemWorkspacePrefix = (kind: ItemKind, workspace: Workspace) =>
  `${itemPrefix(kind)}${workspaceKey(workspace)}|`;
export const itemRowKey = (kind: ItemKind, workspace: Workspace, id: string) =>
  `${itemWorkspacePrefix(kind, workspace)}${id}`;

export const MEMBER_PREFIX = 'member|';
export const memberPrefix = (orgId: OrgId) => `${MEMBER_PREFIX}${orgId}|`;
export const memberRowKey = (orgId: OrgId, userId: UserId) => `${memberPrefix(orgId)}${userId}`;
export const SEAT_PREFIX = 'seat|';
export const seatRowKey = (userId: UserId) => `${SEAT_PREFIX}${userId}`;
