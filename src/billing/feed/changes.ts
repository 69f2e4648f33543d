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
  const items: EntitlementChange[] = [];
  let cursor: string | undefined;
  // Table Storage may end a page early (even empty) with a continuation: go on until the page is full.
  do {
    const page = await table.listPage(ownerId, {
      range: { from: outboxRowKey(since + 1), to: prefixEnd(OUTBOX_PREFIX) },
      top: limit - items.length,
      ...(cursor === undefined ? {} : { cursor }),
    });
    items.push(...page.rows.map(parseOutboxRow));
    cursor = page.nextCursor;
  } while (cursor !== undefined && items.length < limit);
  const last = items.at(-1);
  const more = items.length === limit || cursor !== undefined;
  return { ownerId, items, nextSince: more && last ? last.version : null };
}
