import type { Clock } from '../clock.js';
import {
  type EntityProps,
  type EntityTable,
  entitySize,
  TABLE_LIMITS,
  type TransactionAction,
} from '../store.js';
import { AUDIT_KEY_PREFIX, fromInvertedTime, STATE_PROP } from './entry.js';

/**
 * The cross-owner audit index (docs/decisions/0007-audit-index.md). An audit row lives in its owner's
 * partition, in the change's own transaction; a listing across owners cannot read every partition, so
 * each row is also projected into the partition of its UTC day (`auditidx|<YYYY-MM-DD>`), keyed
 * `<inverted instant>|<partition>|<unique>` so a day reads newest first. A directory partition
 * (`auditidx|days`) lists the days that have rows, newest first, so a query never probes empty days.
 *
 * The index row cannot share the change's transaction, so it is written around it, as the retention and
 * rollover indexes are: `pending` before the transaction, `committed` after. Whatever the crash point:
 * - before the transaction: a pending row whose owner row never appears; readers skip it, and delete it
 *   once it is older than any transaction can be in flight (`PENDING_GRACE_MS`);
 * - after the transaction, before `committed`: a pending row whose owner row exists; readers show the
 *   owner row (the authority) and mark the index row committed.
 * So the index never shows a change that did not commit and never loses one that did. A failed
 * transaction leaves its pending row too (never deleted here: its key may be a committed row's, written
 * again by an upsert or a retried create), and readers settle it the same way.
 *
 * Every audit writer gets this without knowing of it: the billing table is wrapped once, in composition.
 */

export const AUDIT_INDEX_PREFIX = 'auditidx|';
export const AUDIT_DAYS_PARTITION = `${AUDIT_INDEX_PREFIX}days`;
/** A pending row older than this whose owner row is absent belongs to a transaction that never landed. */
export const PENDING_GRACE_MS = 15 * 60_000;

export const auditIndexPartition = (day: string) => `${AUDIT_INDEX_PREFIX}${day}`;

/** `YYYY-MM-DD` (UTC) of an instant. */
export const utcDay = (ms: number) => new Date(ms).toISOString().slice(0, 10);

/** Days sort newest first in the directory: 99999999 − YYYYMMDD, padded. */
export const invertedDay = (day: string) =>
  String(99_999_999 - Number(day.replaceAll('-', ''))).padStart(8, '0');

/** Index row key of an owner row: its inverted instant, then where it lives. */
export function indexRowKey(partitionKey: string, rowKey: string): string {
  const rest = rowKey.slice(AUDIT_KEY_PREFIX.length);
  const split = rest.indexOf('|');
  return `${rest.slice(0, split)}|${partitionKey}|${rest.slice(split + 1)}`;
}

/** The day partition an owner row's index row goes to. */
export function indexDayOf(rowKey: string): string {
  const inverted = rowKey.slice(AUDIT_KEY_PREFIX.length).split('|')[0] ?? '';
  return utcDay(fromInvertedTime(inverted));
}

/** Properties the index adds to the copy of the owner row. */
export const INDEX_PROPS = ['ownerPartition', 'ownerRowKey', 'indexState', 'pendingSince', 'copied'] as const;

export type IndexState = 'pending' | 'committed';

/**
 * The index row: a copy of the owner row, so a page of the index needs no further reads. A row too big to
 * copy with the index's own properties keeps everything but its before/after (`copied: false`), and the
 * reader fetches the owner row for those.
 */
export function indexProps(
  partitionKey: string,
  rowKey: string,
  props: EntityProps,
  state: IndexState,
  now: Date,
): EntityProps {
  const own = {
    ownerPartition: partitionKey,
    ownerRowKey: rowKey,
    indexState: state,
    pendingSince: now.toISOString(),
  };
  const full = { ...props, ...own, copied: true };
  const size = entitySize(auditIndexPartition('0000-00-00'), indexRowKey(partitionKey, rowKey), full);
  if (Object.keys(full).length <= TABLE_LIMITS.properties && size < TABLE_LIMITS.entityBytes - 4096)
    return full;
  const slim: Record<string, string | number | boolean> = {};
  for (const [name, value] of Object.entries(props)) if (!STATE_PROP.test(name)) slim[name] = value;
  return { ...slim, ...own, copied: false };
}

interface Projected {
  readonly rowKey: string;
  readonly props: EntityProps;
}

export function withAuditIndex(
  table: EntityTable,
  deps: {
    readonly clock: Clock;
    /** Day rows remembered as written before the memory is cleared. @default 1000 */
    readonly memoSize?: number;
    /** Where a confirmation left pending is reported. @default console.warn */
    readonly warn?: (message: string, error: unknown) => void;
  },
): EntityTable {
  const days = new Set<string>();
  const memoSize = deps.memoSize ?? 1000;

  const audited = (actions: readonly TransactionAction[]): Projected[] =>
    actions.flatMap((action) =>
      (action.kind === 'create' || action.kind === 'upsert') && action.rowKey.startsWith(AUDIT_KEY_PREFIX)
        ? [{ rowKey: action.rowKey, props: action.props }]
        : [],
    );

  const project = (partitionKey: string, rows: readonly Projected[], state: IndexState) =>
    Promise.all(
      rows.map((row) =>
        table.upsert(
          auditIndexPartition(indexDayOf(row.rowKey)),
          indexRowKey(partitionKey, row.rowKey),
          indexProps(partitionKey, row.rowKey, row.props, state, deps.clock.now()),
        ),
      ),
    );

  async function before(partitionKey: string, rows: readonly Projected[]): Promise<void> {
    const newDays = [...new Set(rows.map((row) => indexDayOf(row.rowKey)))].filter((day) => !days.has(day));
    await Promise.all([
      ...newDays.map(async (day) => {
        await table.upsert(AUDIT_DAYS_PARTITION, invertedDay(day), { day });
        if (days.size >= memoSize) days.clear();
        days.add(day);
      }),
      project(partitionKey, rows, 'pending'),
    ]);
  }

  /**
   * After the change committed: a failure here must not turn a committed change into an error for its
   * caller (who would retry a change already made); the pending row stays, and readers settle it.
   */
  async function after(partitionKey: string, rows: readonly Projected[]): Promise<void> {
    try {
      await project(partitionKey, rows, 'committed');
    } catch (error) {
      (deps.warn ?? console.warn)(`audit index of ${partitionKey} left pending (readers settle it)`, error);
    }
  }

  const isIndexed = (partitionKey: string) => !partitionKey.startsWith(AUDIT_INDEX_PREFIX);

  return {
    ...table,
    async transact(partitionKey, actions) {
      const rows = isIndexed(partitionKey) ? audited(actions) : [];
      if (rows.length === 0) return table.transact(partitionKey, actions);
      await before(partitionKey, rows);
      const result = await table.transact(partitionKey, actions);
      await after(partitionKey, rows);
      return result;
    },
    async create(partitionKey, rowKey, props) {
      if (!isIndexed(partitionKey) || !rowKey.startsWith(AUDIT_KEY_PREFIX))
        return table.create(partitionKey, rowKey, props);
      const rows = [{ rowKey, props }];
      await before(partitionKey, rows);
      const created = await table.create(partitionKey, rowKey, props);
      await after(partitionKey, rows);
      return created;
    },
    async upsert(partitionKey, rowKey, props) {
      if (!isIndexed(partitionKey) || !rowKey.startsWith(AUDIT_KEY_PREFIX))
        return table.upsert(partitionKey, rowKey, props);
      const rows = [{ rowKey, props }];
      await before(partitionKey, rows);
      await table.upsert(partitionKey, rowKey, props);
      await after(partitionKey, rows);
    },
  };
}
