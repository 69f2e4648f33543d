import { z } from 'zod';
import { OUTBOX_PREFIX } from '../feed/outbox.js';
import { CONSUME_MARKER_PREFIX, GRANT_MARKER_PREFIX, LEDGER_PREFIX } from '../metering-rows.js';

/**
 * What is pruned, and when. Three kinds of rows in an owner's partition grow with use and are never read
 * again once old: consume markers (`consume|<key>`), grant markers (`credits|grant|<source>`) and ledger
 * rows (`credits|ledger|…`). Nothing else is pruned: not the balance or the counters (authoritative state;
 * the ledger is their history, not their source), not usage records, reversal rows or audit rows.
 *
 * How long each is kept:
 * - A consume marker makes a retried consumption count once, and lets a failed run be refunded. Clients
 *   retry for minutes to hours (the platform's runtime; at most the 7 days a queue holds a message), and
 *   refund a failed run as soon as it fails. Kept `retentionDays` (at least 90, 400 by default): far past
 *   any retry. A retry after that would count again, and a refund would answer `not_found`.
 * - A grant marker makes a pack's credits arrive once (a redelivered or reconciled checkout: at most the
 *   30 days Stripe keeps events), and holds the credits granted, which a refund (up to 180 days) or a
 *   dispute (usually within 120 days of the charge, for some card networks' reasons up to 540 days, then
 *   weeks to decide, and a won dispute reinstates) takes back or gives back. Without it a late refund
 *   could not claw back. One row per purchase, so they are cheap to keep: at least `GRANT_MARKER_DAYS`.
 * - Ledger rows are the owner's history of credit changes; kept `retentionDays`.
 * - Entitlement feed rows (`outbox|<version>`, `feed/outbox.ts`) are events already published to the
 *   feed; they stay so a consumer that was down can catch up (`GET /api/entitlements/changes`). Kept
 *   `FEED_RETENTION_DAYS`, and never before the feed's cursor has passed them (an unpublished event is
 *   never pruned, however old).
 */
export const MIN_RETENTION_DAYS = 90;
export const DEFAULT_RETENTION_DAYS = 400;
/** Past the longest dispute window (540 days) and its decision, with room. */
export const GRANT_MARKER_DAYS = 730;

/** How long a published entitlement change stays readable: a month of consumer downtime, with room. */
export const FEED_RETENTION_DAYS = 35;

export const DAY_MS = 86_400_000;

export type PrunableKind = 'consume' | 'grant' | 'ledger' | 'feed';

export const PRUNABLE_PREFIXES: Readonly<Record<PrunableKind, string>> = {
  consume: CONSUME_MARKER_PREFIX,
  grant: GRANT_MARKER_PREFIX,
  ledger: LEDGER_PREFIX,
  feed: OUTBOX_PREFIX,
};

/** The kind of a prunable row key, or `undefined` for every row that must never be pruned. */
export function prunableKind(rowKey: string): PrunableKind | undefined {
  for (const [kind, prefix] of Object.entries(PRUNABLE_PREFIXES) as Array<[PrunableKind, string]>) {
    if (rowKey.startsWith(prefix)) return kind;
  }
  return undefined;
}

/** Days a row of this kind is kept at least. */
export function keepDays(kind: PrunableKind, retentionDays: number): number {
  if (kind === 'feed') return FEED_RETENTION_DAYS;
  return kind === 'grant' ? Math.max(retentionDays, GRANT_MARKER_DAYS) : retentionDays;
}

/** `YYYY-MM` of an instant (UTC). */
export const utcMonth = (at: Date) => at.toISOString().slice(0, 7);

/** The month `months` after `month` (`YYYY-MM`). */
export function addMonths(month: string, months: number): string {
  const [year, mon] = month.split('-').map(Number);
  return utcMonth(new Date(Date.UTC(year ?? 1970, (mon ?? 1) - 1 + months, 1)));
}

export const RETENTION_STATE_PARTITION = 'retention|state';
export const RETENTION_CURSOR_ROW = 'cursor';
export const retentionPartition = (month: string) => `retention|${month}`;

/**
 * The month whose index lists an owner with a row of `kind` written at `at`: the month after the row
 * falls due, so that once the month begins everything written into its index is due.
 */
export function dueMonth(kind: PrunableKind, at: Date, retentionDays: number): string {
  return addMonths(utcMonth(new Date(at.getTime() + keepDays(kind, retentionDays) * DAY_MS)), 1);
}

export const retentionIndexSchema = z.object({
  ownerId: z.string().min(1),
  /** Progress of a sweep a run's budget stopped: the last consume marker examined. */
  after: z.string().optional(),
  /** Whether the swept part kept prunable rows (so the owner must be visited again). */
  kept: z.boolean().optional(),
});

export const retentionCursorSchema = z.object({ month: z.string().regex(/^\d{4}-\d{2}$/) });
