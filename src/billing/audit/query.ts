import type { Clock } from '../clock.js';
import { CorruptRowError } from '../owner/rows.js';
import { readRows } from '../storage/read-rows.js';
import {
  type EntityProps,
  type EntityTable,
  EtagMismatchError,
  prefixEnd,
  type RowKeyRange,
  type StoredEntity,
} from '../store.js';
import {
  AuditCursorError,
  type CrossCursor,
  decodeCrossCursor,
  decodeOwnerCursor,
  encodeCursor,
  type OwnerCursor,
} from './cursor.js';
import {
  AUDIT_ACTOR_KINDS,
  AUDIT_KEY_PREFIX,
  AUDIT_PREFIX,
  type AuditCauseKind,
  GLOBAL_AUDIT_PARTITION,
  invertedTime,
} from './entry.js';
import {
  AUDIT_DAYS_PARTITION,
  auditIndexPartition,
  INDEX_PROPS,
  indexProps,
  invertedDay,
  PENDING_GRACE_MS,
  utcDay,
} from './index-writer.js';
import { type AuditRecord, parseAuditRow } from './parse.js';

export { AuditCursorError };

/** Rows per page, at most. */
export const AUDIT_PAGE_MAX = 200;
/** Rows one request reads at most while filtering; past it the page ends early with a cursor. */
export const AUDIT_SCAN_BUDGET = 1000;
/** Day partitions one cross-owner request visits at most. */
export const AUDIT_DAYS_PER_PAGE = 31;

export interface AuditQuery {
  /** Inclusive. */
  readonly from?: Date | undefined;
  /** Exclusive. */
  readonly to?: Date | undefined;
  readonly cause?: AuditCauseKind | undefined;
  /** An actor kind (`stripe`), a kind and id (`user:alice`), or an id (`alice`). */
  readonly actor?: string | undefined;
  /** 1 to `AUDIT_PAGE_MAX`. */
  readonly limit: number;
  readonly cursor?: string | undefined;
}

/** A row that could not be read, reported (and logged) rather than skipped silently or failing the page. */
export interface CorruptAuditRow {
  readonly partitionKey: string;
  readonly rowKey: string;
  readonly detail: string;
}

export interface AuditPage {
  /** Newest first. */
  readonly items: AuditRecord[];
  readonly corrupt: CorruptAuditRow[];
  /** `null` on the last page. A page may hold fewer than `limit` items and still have a cursor. */
  readonly nextCursor: string | null;
}

export interface AuditLog {
  /**
   * One owner's trail (or the global partition's, for `GLOBAL_AUDIT_PARTITION`): the authoritative rows
   * in its partition, newest first, then rows written before the current key layout.
   * @throws AuditCursorError
   */
  listOwner(partitionKey: string, query: AuditQuery): Promise<AuditPage>;
  /** Every owner's rows, newest first, from the day index (`index-writer.ts`). @throws AuditCursorError */
  listAll(query: AuditQuery): Promise<AuditPage>;
  /** One row; `undefined` when absent. @throws CorruptRowError */
  get(partitionKey: string, rowKey: string): Promise<AuditRecord | undefined>;
}

const LAST_DAY = '9999-12-31';

export const ownerOfPartition = (partitionKey: string) =>
  partitionKey === GLOBAL_AUDIT_PARTITION ? null : partitionKey;

/** Keys of the current layout within `[from, to)`: newer instants sort first (see `entry.ts`). */
function timeRange(prefix: string, query: AuditQuery): RowKeyRange {
  const from =
    query.to === undefined ? prefix : `${prefix}${invertedTime(Math.max(0, query.to.getTime() - 1))}`;
  const to =
    query.from === undefined
      ? prefixEnd(prefix)
      : `${prefix}${String(Number(invertedTime(query.from.getTime())) + 1).padStart(13, '0')}`;
  return { from, to };
}

function matches(record: AuditRecord, query: AuditQuery): boolean {
  if (query.cause !== undefined && record.cause.kind !== query.cause) return false;
  const actor = query.actor;
  if (actor === undefined) return true;
  if (AUDIT_ACTOR_KINDS.some((kind) => kind === actor)) return record.actor.kind === actor;
  const split = actor.indexOf(':');
  if (split > 0)
    return record.actor.kind === actor.slice(0, split) && record.actor.id === actor.slice(split + 1);
  return record.actor.id === actor;
}

function inWindow(record: AuditRecord, query: AuditQuery): boolean {
  const at = Date.parse(record.at);
  return (
    (query.from === undefined || at >= query.from.getTime()) &&
    (query.to === undefined || at < query.to.getTime())
  );
}

const stripIndexProps = (props: EntityProps): EntityProps => {
  const own: Record<string, string | number | boolean> = { ...props };
  for (const name of INDEX_PROPS) delete own[name];
  return own;
};

const sameProps = (a: EntityProps, b: EntityProps) =>
  JSON.stringify(Object.entries(a).sort(([x], [y]) => x.localeCompare(y))) ===
  JSON.stringify(Object.entries(b).sort(([x], [y]) => x.localeCompare(y)));

export function createAuditLog(deps: {
  /** The billing table, unwrapped or wrapped: reads only, and index repairs written directly. */
  readonly table: EntityTable;
  readonly clock: Clock;
  readonly log?: (message: string) => void;
}): AuditLog {
  const { table, clock } = deps;
  const log = deps.log ?? ((message: string) => console.warn(message));

  const report = (corrupt: CorruptAuditRow[], error: CorruptRowError) => {
    log(`audit: ${error.message}`);
    corrupt.push({ partitionKey: error.partitionKey, rowKey: error.rowKey, detail: error.message });
  };

  /** The record an owner row stands for, or a report of why it cannot be read. */
  function read(row: StoredEntity, corrupt: CorruptAuditRow[]): AuditRecord | undefined {
    try {
      return parseAuditRow(row, ownerOfPartition);
    } catch (error) {
      if (!(error instanceof CorruptRowError)) throw error;
      report(corrupt, error);
      return undefined;
    }
  }

  /**
   * What an index row shows: its copy once committed; for a pending row, the owner row if the change
   * landed (and the index row is marked committed when it holds that very row), nothing otherwise.
   */
  async function resolve(row: StoredEntity, corrupt: CorruptAuditRow[]): Promise<AuditRecord | undefined> {
    const { ownerPartition, ownerRowKey, indexState, copied, pendingSince } = row.props;
    if (typeof ownerPartition !== 'string' || typeof ownerRowKey !== 'string') {
      report(corrupt, new CorruptRowError(row.partitionKey, row.rowKey, 'index row names no audit row'));
      return undefined;
    }
    const own = stripIndexProps(row.props);
    if (indexState === 'committed' && copied === true)
      return read({ partitionKey: ownerPartition, rowKey: ownerRowKey, etag: row.etag, props: own }, corrupt);
    const owner = await table.get(ownerPartition, ownerRowKey);
    if (owner === undefined) {
      const since = typeof pendingSince === 'string' ? Date.parse(pendingSince) : Number.NaN;
      if (indexState !== 'committed' && clock.now().getTime() - since > PENDING_GRACE_MS) {
        // The transaction it announced never landed: drop it, unless it was written again meanwhile.
        try {
          await table.delete(row.partitionKey, row.rowKey, row.etag);
        } catch (error) {
          if (!(error instanceof EtagMismatchError)) throw error;
        }
      }
      return undefined;
    }
    if (indexState !== 'committed' && sameProps(owner.props, own)) {
      try {
        await table.update(
          row.partitionKey,
          row.rowKey,
          indexProps(ownerPartition, ownerRowKey, owner.props, 'committed', clock.now()),
          row.etag,
        );
      } catch (error) {
        // Someone wrote it meanwhile (the writer's own confirmation, or a newer pending copy): theirs stands.
        if (!(error instanceof EtagMismatchError)) throw error;
      }
    }
    return read(owner, corrupt);
  }

  /**
   * Reads `range` after `after` in batches, keeping what passes, until the page is full, the range ends
   * or the scan budget is spent. `stop` is the key to go on after, or `undefined` when the range is done.
   */
  async function collect(
    partitionKey: string,
    range: RowKeyRange,
    after: string | undefined,
    want: number,
    budget: number,
    toRecord: (rows: StoredEntity[]) => Promise<Array<AuditRecord | undefined>>,
    query: AuditQuery,
    items: AuditRecord[],
  ): Promise<{ readonly stop: string | undefined; readonly scanned: number }> {
    let scanned = 0;
    let last = after;
    while (scanned < budget) {
      const batchSize = Math.min(budget - scanned, 200);
      const rows = await readRows(table, partitionKey, { range, after: last }, batchSize);
      const records = await toRecord(rows);
      for (const [index, row] of rows.entries()) {
        scanned++;
        last = row.rowKey;
        const record = records[index];
        if (record !== undefined && matches(record, query)) {
          items.push(record);
          if (items.length >= want) return { stop: last, scanned };
        }
      }
      if (rows.length < batchSize) return { stop: undefined, scanned };
    }
    return { stop: last, scanned };
  }

  async function legacyRows(partitionKey: string): Promise<StoredEntity[]> {
    // Everything under `audit|` but the current layout: older rows no longer grow, so they are read whole.
    const [before, afterRows] = await Promise.all([
      table.list(partitionKey, { range: { from: AUDIT_PREFIX, to: AUDIT_KEY_PREFIX } }),
      table.list(partitionKey, { range: { from: prefixEnd(AUDIT_KEY_PREFIX), to: prefixEnd(AUDIT_PREFIX) } }),
    ]);
    return [...before, ...afterRows];
  }

  async function listOwner(partitionKey: string, query: AuditQuery): Promise<AuditPage> {
    const cursor: OwnerCursor | undefined =
      query.cursor === undefined ? undefined : decodeOwnerCursor(query.cursor);
    const items: AuditRecord[] = [];
    const corrupt: CorruptAuditRow[] = [];
    if (cursor === undefined || cursor.p === 'n') {
      const { stop } = await collect(
        partitionKey,
        timeRange(AUDIT_KEY_PREFIX, query),
        cursor?.k,
        query.limit,
        AUDIT_SCAN_BUDGET,
        async (rows) => rows.map((row) => read(row, corrupt)),
        query,
        items,
      );
      if (stop !== undefined)
        return { items, corrupt, nextCursor: encodeCursor({ s: 'o', p: 'n', k: stop }) };
      if (items.length >= query.limit)
        return { items, corrupt, nextCursor: encodeCursor({ s: 'o', p: 'l' }) };
    }
    // Older rows, newest first; their corrupt ones are reported on the first page that reaches them.
    const legacyCorrupt: CorruptAuditRow[] = [];
    const legacy = (await legacyRows(partitionKey))
      .map((row) => ({ row, record: read(row, legacyCorrupt) }))
      .filter((entry): entry is { row: StoredEntity; record: AuditRecord } => entry.record !== undefined)
      .filter(({ record }) => inWindow(record, query) && matches(record, query))
      .sort((a, b) => b.record.at.localeCompare(a.record.at) || b.row.rowKey.localeCompare(a.row.rowKey));
    if (cursor?.p !== 'l') corrupt.push(...legacyCorrupt);
    let start = 0;
    if (cursor?.p === 'l' && cursor.k !== undefined) {
      const at = legacy.findIndex(({ row }) => row.rowKey === cursor.k);
      start = at < 0 ? legacy.length : at + 1;
    }
    const room = query.limit - items.length;
    const taken = legacy.slice(start, start + room);
    items.push(...taken.map(({ record }) => record));
    const lastTaken = taken.at(-1);
    const more = start + room < legacy.length && lastTaken !== undefined;
    return {
      items,
      corrupt,
      nextCursor: more ? encodeCursor({ s: 'o', p: 'l', k: lastTaken.row.rowKey }) : null,
    };
  }

  async function listAll(query: AuditQuery): Promise<AuditPage> {
    const cursor: CrossCursor | undefined =
      query.cursor === undefined ? undefined : decodeCrossCursor(query.cursor);
    const items: AuditRecord[] = [];
    const corrupt: CorruptAuditRow[] = [];
    // Without `to`, no upper bound: a change stamped ahead of this clock (a test clock, a skewed host) still lists.
    const newestDay =
      cursor?.d ?? (query.to === undefined ? LAST_DAY : utcDay(Math.max(0, query.to.getTime() - 1)));
    const oldestDay = utcDay(query.from?.getTime() ?? 0);
    if (newestDay < oldestDay) return { items, corrupt, nextCursor: null };
    const dayRows = await readRows(
      table,
      AUDIT_DAYS_PARTITION,
      {
        range: {
          from: invertedDay(newestDay),
          to: String(Number(invertedDay(oldestDay)) + 1).padStart(8, '0'),
        },
      },
      AUDIT_DAYS_PER_PAGE + 1,
    );
    const days = dayRows.flatMap((row) => (typeof row.props.day === 'string' ? [row.props.day] : []));
    let budget = AUDIT_SCAN_BUDGET;
    const visit = Math.min(days.length, AUDIT_DAYS_PER_PAGE);
    for (let index = 0; index < visit; index++) {
      const day = days[index];
      if (day === undefined) break;
      const after = cursor !== undefined && day === cursor.d ? cursor.k : undefined;
      const { stop, scanned } = await collect(
        auditIndexPartition(day),
        timeRange('', query),
        after,
        query.limit,
        budget,
        (rows) => Promise.all(rows.map((row) => resolve(row, corrupt))),
        query,
        items,
      );
      budget -= scanned;
      if (stop !== undefined)
        return { items, corrupt, nextCursor: encodeCursor({ s: 'x', d: day, k: stop }) };
      // This day is done; with the budget spent, the next page starts at the next day.
      if (budget <= 0) {
        const next = days[index + 1];
        return { items, corrupt, nextCursor: next === undefined ? null : encodeCursor({ s: 'x', d: next }) };
      }
    }
    const next = days[AUDIT_DAYS_PER_PAGE];
    return { items, corrupt, nextCursor: next === undefined ? null : encodeCursor({ s: 'x', d: next }) };
  }

  return {
    listOwner,
    listAll,
    async get(partitionKey, rowKey) {
      const row = await table.get(partitionKey, rowKey);
      return row === undefined ? undefined : parseAuditRow(row, ownerOfPartition);
    },
  };
}
