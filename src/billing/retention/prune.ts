import type { Clock } from '../clock.js';
import { cursorSchema, FEED_CURSOR_ROW } from '../feed/outbox.js';
import type { OwnerId } from '../ids.js';
import { ledgerOlderThan, parseRow } from '../metering-rows.js';
import { commit, write } from '../storage/commit.js';
import type { EntityTable, ListPageOptions, StoredEntity } from '../store.js';
import {
  addMonths,
  DAY_MS,
  keepDays,
  PRUNABLE_PREFIXES,
  prunableKind,
  RETENTION_CURSOR_ROW,
  RETENTION_STATE_PARTITION,
  retentionCursorSchema,
  retentionIndexSchema,
  retentionPartition,
  utcMonth,
} from './policy.js';

/**
 * The retention job: deletes consume markers, grant markers and ledger rows past their retention
 * (`policy.ts`), owner by owner, never touching a balance, a counter or any other row.
 *
 * Which owners: those listed in the retention index of a month that has begun (`retention|<YYYY-MM>`,
 * written by `withRetentionIndex` when such rows are created, and by this job for owners that still have
 * rows to keep). No table scan: each run reads the index months from its cursor to now, and for each
 * owner only its prunable ranges, in bounded pages. Ledger keys count time down, so the old ledger rows
 * are one range read exactly; markers are keyed by idempotency key, so an owner's markers are read
 * whole (keys and `at` only, a thousand a request) once a month while it still holds some.
 *
 * Resumable and crash-safe: every delete is idempotent; an owner's index row goes only after its sweep
 * finished and, when rows were kept, after the owner was listed for next month; a sweep the budget stops
 * keeps its place on the index row; the cursor (`retention|state`/`cursor`) moves past a month only once
 * the month is empty. A run that fails anywhere is finished by the next.
 */
export interface Retention {
  run(options?: RetentionRunOptions): Promise<RetentionReport>;
}

export interface RetentionRunOptions {
  /** @default clock.now() */
  readonly now?: Date;
  /** Start no new work after this many milliseconds; the next run continues. @default 240000 */
  readonly budgetMs?: number;
  /** Start no new page after reading this many rows; the next run continues. @default 200000 */
  readonly maxRows?: number;
}

export interface RetentionOptions {
  /** Days consume markers and ledger rows are kept (grant markers longer: `GRANT_MARKER_DAYS`). */
  readonly retentionDays: number;
  /** Months before the cursor every run reads again, for index rows written late. @default 1 */
  readonly lookbackMonths?: number;
}

export interface RetentionReport {
  /** False when the budget ran out first; the next run continues where this one stopped. */
  readonly complete: boolean;
  /** Owners whose sweep finished in this run. */
  readonly owners: number;
  readonly pruned: {
    readonly consume: number;
    readonly grant: number;
    readonly ledger: number;
    /** Published entitlement changes past `FEED_RETENTION_DAYS` (`feed/outbox.ts`). */
    readonly feed: number;
  };
  /** Index rows that did not parse, left in place (they hold the cursor back) for someone to look at. */
  readonly invalid: readonly string[];
  readonly rowsRead: number;
  /** The earliest month that may still hold index rows. */
  readonly cursor: string;
  readonly elapsedMs: number;
}

export interface RetentionDeps {
  /** The owner-partitioned `billing` table (the retention partitions live beside the owners'). */
  readonly table: EntityTable;
  readonly clock: Clock;
  readonly options: RetentionOptions;
}

/** Index rows, and ledger rows, read per request. */
const INDEX_PAGE = 100;
const ROW_PAGE = 1000;
/** Rows deleted per transaction (Table Storage's limit). */
const DELETE_CHUNK = 100;

interface SweepState {
  readonly after?: string;
  readonly kept?: boolean;
}

type SweepResult =
  | { readonly done: true; readonly kept: boolean }
  | { readonly done: false; readonly state: SweepState };

export function createRetention(deps: RetentionDeps): Retention {
  const { table, clock } = deps;
  const { retentionDays } = deps.options;
  const lookbackMonths = deps.options.lookbackMonths ?? 1;

  async function run(options: RetentionRunOptions = {}): Promise<RetentionReport> {
    const started = Date.now();
    const budgetMs = options.budgetMs ?? 240_000;
    const maxRows = options.maxRows ?? 200_000;
    const now = options.now ?? clock.now();
    const thisMonth = utcMonth(now);
    const pruned = { consume: 0, grant: 0, ledger: 0, feed: 0 };
    const invalid: string[] = [];
    let rowsRead = 0;
    let owners = 0;
    // Every run finishes at least one page of an owner's rows before the budget can stop it, so even a
    // budget smaller than one page makes progress.
    let progressed = false;
    const outOfBudget = () => progressed && (Date.now() - started >= budgetMs || rowsRead >= maxRows);

    /** One page of rows, counted against the budget. */
    const page = async (partitionKey: string, pageOptions: ListPageOptions) => {
      const result = await table.listPage(partitionKey, pageOptions);
      rowsRead += result.rows.length;
      return result;
    };

    /** Deletes rows of one owner, up to 100 per transaction, through the one write path. */
    const remove = async (ownerId: OwnerId, rows: readonly StoredEntity[]) => {
      for (let from = 0; from < rows.length; from += DELETE_CHUNK) {
        let keys = rows.slice(from, from + DELETE_CHUNK).map((row) => row.rowKey);
        for (const key of keys) {
          // By construction only prunable rows are listed; this makes sure no change ever widens that.
          if (prunableKind(key) === undefined)
            throw new Error(`Refusing to prune ${ownerId}/${key}: not a prunable row`);
        }
        await commit(
          table,
          ownerId,
          async (round) => {
            // A row already gone (another run, or this one before a crash) fails the batch's delete: keep
            // only the rows still there and delete those.
            if (round > 1) {
              const present = await Promise.all(keys.map((key) => table.get(ownerId, key)));
              keys = keys.filter((_, i) => present[i] !== undefined);
            }
            return write(
              keys.map((rowKey) => ({ kind: 'delete' as const, rowKey })),
              () => undefined,
            );
          },
          { what: `pruning ${keys.length} rows of ${ownerId}` },
        );
        for (const key of keys) {
          const kind = prunableKind(key);
          if (kind) pruned[kind]++;
        }
      }
    };

    /** Prunes one owner's due rows; stops early (with its place) when the budget runs out. */
    const sweep = async (ownerId: OwnerId, state: SweepState): Promise<SweepResult> => {
      let kept = state.kept ?? false;
      // Old ledger rows: one range, all due. Deleted rows leave it, so a resumed sweep simply starts again.
      const ledger = ledgerOlderThan(new Date(now.getTime() - retentionDays * DAY_MS));
      let cursor: string | undefined;
      do {
        if (outOfBudget()) return { done: false, state };
        const result = await page(ownerId, {
          range: ledger,
          top: ROW_PAGE,
          select: ['at'],
          ...(cursor === undefined ? {} : { cursor }),
        });
        await remove(ownerId, result.rows);
        if (result.rows.length > 0) progressed = true;
        cursor = result.nextCursor;
      } while (cursor !== undefined);

      // Markers, keyed by idempotency key: read whole (keys and `at`), consume markers then grant markers;
      // then the entitlement feed's rows, keyed by version, which go only once the feed published them.
      let after = state.after;
      let published: number | undefined;
      for (const kind of ['consume', 'grant', 'feed'] as const) {
        const prefix = PRUNABLE_PREFIXES[kind];
        // A sweep stopped among grant markers has finished the consume markers (their prefix sorts first).
        if (after !== undefined && after >= `${prefix}\uffff`) continue;
        const cutoff = now.getTime() - keepDays(kind, retentionDays) * DAY_MS;
        if (kind === 'feed' && published === undefined) {
          const row = await table.get(ownerId, FEED_CURSOR_ROW);
          published = row ? parseRow(cursorSchema, row).drained : 0;
        }
        cursor = undefined;
        do {
          if (outOfBudget())
            return { done: false, state: { ...(after === undefined ? {} : { after }), kept } };
          const result = await page(ownerId, {
            prefix,
            top: ROW_PAGE,
            select: kind === 'feed' ? ['at', 'version'] : ['at'],
            ...(after?.startsWith(prefix) ? { after } : {}),
            ...(cursor === undefined ? {} : { cursor }),
          });
          const due = result.rows.filter((row) => {
            // A row that cannot be dated is kept: pruning never guesses.
            const at = typeof row.props.at === 'string' ? Date.parse(row.props.at) : Number.NaN;
            if (kind === 'feed') {
              const version = row.props.version;
              if (typeof version !== 'number' || version > (published ?? 0)) return false;
            }
            return !Number.isNaN(at) && at < cutoff;
          });
          if (due.length < result.rows.length) kept = true;
          await remove(ownerId, due);
          // Progress only when the place moved: an empty page leaves nothing to resume from.
          if (result.rows.length > 0) progressed = true;
          after = result.rows.at(-1)?.rowKey ?? after;
          cursor = result.nextCursor;
        } while (cursor !== undefined);
      }
      // Ledger rows newer than the cutoff are due later: the owner is visited again while any remain.
      if (!kept)
        kept =
          (await page(ownerId, { prefix: PRUNABLE_PREFIXES.ledger, top: 1, select: ['at'] })).rows.length > 0;
      return { done: true, kept };
    };

    const cursorRow = await table.get(RETENTION_STATE_PARTITION, RETENTION_CURSOR_ROW);
    const cursor = cursorRow ? parseRow(retentionCursorSchema, cursorRow).month : undefined;
    const months: string[] = [];
    for (
      let month = addMonths(cursor ?? thisMonth, -lookbackMonths);
      month <= thisMonth;
      month = addMonths(month, 1)
    )
      months.push(month);

    let exhausted = false;
    let firstPending: string | undefined;
    for (const month of months) {
      const partition = retentionPartition(month);
      let pending = false;
      let after: string | undefined;
      let storeCursor: string | undefined;
      scan: do {
        if (outOfBudget()) {
          exhausted = pending = true;
          break;
        }
        const result = await page(partition, {
          top: INDEX_PAGE,
          ...(after === undefined ? {} : { after }),
          ...(storeCursor === undefined ? {} : { cursor: storeCursor }),
        });
        for (const row of result.rows) {
          const parsed = retentionIndexSchema.safeParse(row.props);
          if (!parsed.success) {
            invalid.push(`${row.partitionKey}/${row.rowKey}`);
            pending = true;
            continue;
          }
          const { ownerId, ...state } = parsed.data;
          const swept = await sweep(ownerId, state);
          if (!swept.done) {
            // Its place, for the next run; the index row stays, so the month stays pending.
            await table.upsert(partition, row.rowKey, { ownerId, ...swept.state });
            exhausted = pending = true;
            break scan;
          }
          // Listed for next month before it leaves this one, so an owner with rows to keep is never lost.
          if (swept.kept)
            await table.upsert(retentionPartition(addMonths(thisMonth, 1)), row.rowKey, { ownerId });
          await table.delete(partition, row.rowKey);
          owners++;
        }
        after = result.rows.at(-1)?.rowKey ?? after;
        storeCursor = result.nextCursor;
      } while (storeCursor !== undefined);
      if (pending) firstPending ??= month;
      if (exhausted) break;
    }
    const newCursor = firstPending ?? thisMonth;
    if (newCursor !== cursor) {
      await table.upsert(RETENTION_STATE_PARTITION, RETENTION_CURSOR_ROW, {
        month: newCursor,
        updatedAt: now.toISOString(),
      });
    }
    return {
      complete: !exhausted,
      owners,
      pruned,
      invalid,
      rowsRead,
      cursor: newCursor,
      elapsedMs: Date.now() - started,
    };
  }

  return { run };
}
