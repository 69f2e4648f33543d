import type { OwnerId } from '../ids.js';
import { type EntityTable, prefixEnd } from '../store.js';
import { type EntitlementChange, OUTBOX_PREFIX, outboxRowKey, parseOutboxRow } from './outbox.js';

/**
 * `GET /api/entitlements/changes?since=`: the retained outbox rows of one owner after a version,
 * ascending, one bounded page at a time. Rows are kept for the feed's retention window whether or not
 * they were published, so a consumer that was down catches up here; versions have gaps (changes that
 * moved nothing a consumer caches write no row), and `nextSince` is where to continue.
 */
export interface ChangesPage {
  readonly ownerId: OwnerId;
  readonly items: readonly EntitlementChange[];
  /** Pass as `since` for the next page; `null` when this page reached the newest change. */
  readonly nextSince: number | null;
}

export const CHANGES_MAX = 100;

export async function listChanges(
  table: EntityTable,
  ownerId: OwnerId,
  since: number,
  limit: number,
): Promise<ChangesPage> {
  const page = await table.listPage(ownerId, {
    range: { from: outboxRowKey(since + 1), to: prefixEnd(OUTBOX_PREFIX) },
    top: limit,
  });
  const items = page.rows.map(parseOutboxRow);
  const last = items.at(-1);
  const full = items.length === limit || page.nextCursor !== undefined;
  return { ownerId, items, nextSince: full && last ? last.version : null };
}
