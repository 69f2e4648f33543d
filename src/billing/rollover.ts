import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { auditAction } from './audit/entry.js';
import { METER_NAMES, type MeterName } from './catalog.js';
import type { Clock } from './clock.js';
import { type FieldIssue, validationError } from './errors.js';
import { idSchema, type OwnerId } from './ids.js';
import {
  parseRow,
  ROLLOVER_CURSOR_ROW,
  ROLLOVER_STATE_PARTITION,
  recordPrefix,
  recordRowKey,
  recordSchema,
  rolloverCursorSchema,
  rolloverIndexSchema,
  rolloverPartition,
} from './metering-rows.js';
import { boundsFromKey, utcDay } from './periods.js';
import { type EntityTable, type StoredEntity, TransactionFailedError } from './store.js';
import { counterKeyParts, parseUsageCounter, USAGE_PREFIX, usageRowKey } from './usage.js';

/**
 * Period rollover. Counters are keyed by period, so nothing is ever reset; this daily job only closes
 * ended periods into usage records (`record|<meter>|<periodKey>`, a snapshot of the counter).
 *
 * Which periods: `consume` writes an index row in the partition of the day the period ends
 * (`rollover|<YYYY-MM-DD>`, row `<ownerId>|<meter>|<periodKey>`) before it first creates the period's
 * counter. The job scans those partitions up to today, and for each period that has ended: creates
 * the record if absent, then deletes the index row. Every step is idempotent and the index row goes
 * last, so a run that crashes or runs out of time is finished by the next run. A cursor
 * (`rollover|state`/`cursor`) remembers the earliest day that may still hold index rows; every run also
 * rescans `lookbackDays` before it, for rows written late.
 */
export interface Rollover {
  run(options?: RolloverRunOptions): Promise<RolloverReport>;
  /**
   * Usage per period overlapping `[from, to)`, right whether or not the job has run: the counters are
   * authoritative, records add the snapshot taken when the period was closed.
   */
  history(request: HistoryRequest): Promise<UsageHistory>;
}

export interface RolloverRunOptions {
  /** Close periods that ended before this (minus `settleMs`). @default clock.now() */
  readonly now?: Date;
  /** Start no new work after this many milliseconds; the next run continues. @default 240000 */
  readonly budgetMs?: number;
  /** Names the run on the audit rows of the periods it closes. @default a random UUID */
  readonly runId?: string;
}

export interface RolloverOptions {
  /** A period is closed only this long after its end, so consumptions in flight at the end land first. @default 900000 (15 min) */
  readonly settleMs?: number;
  /** Days before the cursor that every run scans again. @default 7 */
  readonly lookbackDays?: number;
  /** Days scanned by the first run ever (no cursor yet). @default 400 */
  readonly firstRunDays?: number;
  /** Periods closed in parallel. @default 32 */
  readonly concurrency?: number;
}

export interface RolloverReport {
  /** False when the budget ran out first; the next run continues where this one stopped. */
  readonly complete: boolean;
  /** Records written by this run. */
  readonly closed: number;
  /** Periods whose record already existed (a run that crashed after writing it). */
  readonly alreadyClosed: number;
  /** Index rows without a counter (the consumption that wrote them never committed): removed. */
  readonly withoutUsage: number;
  /**
   * Index rows of a period whose counter now ends later (a late renewal's period replaced the window
   * assumed before it): removed without a record, since metering indexed the new end day first.
   */
  readonly moved: number;
  /** Index rows that did not parse, left in place (they hold the cursor back) for someone to look at. */
  readonly invalid: readonly string[];
  readonly daysScanned: number;
  /** The earliest day that may still hold index rows. */
  readonly cursor: string;
  readonly elapsedMs: number;
}

export interface HistoryRequest {
  readonly ownerId: OwnerId;
  readonly meter: MeterName;
  readonly from: Date;
  /** Exclusive. */
  readonly to: Date;
}

export interface PeriodUsage {
  readonly meter: MeterName;
  readonly periodKey: string;
  readonly periodStart: string;
  /** Exclusive. `null` only for a counter written before metering stored period bounds. */
  readonly periodEnd: string | null;
  /** `open`: still running; `ended`: over, not yet closed by the job; `closed`: record written. */
  readonly status: 'open' | 'ended' | 'closed';
  /** From the counter: includes late consumptions and refunds after the record was taken. */
  readonly used: number;
  readonly fromAllowance: number;
  readonly fromCredits: number;
  readonly overage: number;
  readonly allowance: number | null;
  /** The snapshot taken when the period was closed. */
  readonly record: { readonly used: number; readonly closedAt: string } | null;
}

export interface UsageHistory {
  readonly ownerId: OwnerId;
  readonly meter: MeterName;
  readonly from: string;
  readonly to: string;
  /** Oldest first. */
  readonly periods: readonly PeriodUsage[];
  readonly totals: {
    readonly used: number;
    readonly fromAllowance: number;
    readonly fromCredits: number;
    readonly overage: number;
  };
}

export interface RolloverDeps {
  /** The owner-partitioned `billing` table (the rollover partitions live beside the owners'). */
  readonly table: EntityTable;
  /** Runs before an owner's counters are read: brings an owner still in the old layout over. */
  readonly beforeOwner?: (ownerId: OwnerId) => Promise<void>;
  readonly clock: Clock;
  readonly options?: RolloverOptions;
}

const DAY_MS = 86_400_000;
const addDays = (day: string, days: number) =>
  utcDay(new Date(Date.parse(`${day}T00:00:00.000Z`) + days * DAY_MS));

const historySchema = z
  .object({ ownerId: idSchema, meter: z.enum(METER_NAMES), from: z.date(), to: z.date() })
  .refine((r) => r.from.getTime() < r.to.getTime(), { message: 'from must be before to', path: ['to'] });

export function createRollover(deps: RolloverDeps): Rollover {
  const { table, clock } = deps;
  const settleMs = deps.options?.settleMs ?? 15 * 60_000;
  const lookbackDays = deps.options?.lookbackDays ?? 7;
  const firstRunDays = deps.options?.firstRunDays ?? 400;
  const concurrency = Math.max(1, deps.options?.concurrency ?? 32);

  async function run(options: RolloverRunOptions = {}): Promise<RolloverReport> {
    const started = Date.now();
    const budgetMs = options.budgetMs ?? 240_000;
    const outOfTime = () => Date.now() - started >= budgetMs;
    const now = options.now ?? clock.now();
    const cutoff = now.getTime() - settleMs;
    const lastDay = utcDay(new Date(cutoff));
    const closedAt = now.toISOString();
    const runId = options.runId ?? randomUUID();

    const cursorRow = await table.get(ROLLOVER_STATE_PARTITION, ROLLOVER_CURSOR_ROW);
    const cursor = cursorRow ? parseRow(rolloverCursorSchema, cursorRow, 'rollover cursor').day : undefined;
    const days: string[] = [];
    for (
      let day = cursor ? addDays(cursor, -lookbackDays) : addDays(lastDay, -firstRunDays);
      day <= lastDay;
    ) {
      days.push(day);
      day = addDays(day, 1);
    }

    let closed = 0;
    let alreadyClosed = 0;
    let withoutUsage = 0;
    let moved = 0;
    let daysScanned = 0;
    const invalid: string[] = [];
    let firstPending: string | undefined;

    /** Closes one period; true when its index row can go. */
    const close = async (row: StoredEntity): Promise<boolean> => {
      const parsed = rolloverIndexSchema.safeParse(row.props);
      if (!parsed.success) {
        invalid.push(`${row.partitionKey}/${row.rowKey}`);
        return false;
      }
      const { ownerId, meter, periodKey } = parsed.data;
      // An owner still in the old layout is brought over first, so its counter is where we look.
      await deps.beforeOwner?.(ownerId);
      const counterKey = usageRowKey(meter, { key: periodKey, start: new Date(parsed.data.periodStart) });
      const counterRow = await table.get(ownerId, counterKey);
      if (!counterRow) {
        withoutUsage++;
        return true;
      }
      const counter = parseUsageCounter(counterRow);
      if (counter.periodEnd !== null && Date.parse(counter.periodEnd) > cutoff) {
        moved++;
        return true;
      }
      const record = {
        meter,
        periodKey,
        periodStart: counter.periodStart ?? parsed.data.periodStart,
        periodEnd: counter.periodEnd ?? parsed.data.periodEnd,
        used: counter.used,
        allowanceUsed: counter.allowanceUsed,
        creditsUsed: counter.creditsUsed,
        overage: counter.overage,
        ...(counter.allowance === null ? {} : { allowance: counter.allowance }),
        closedAt,
      };
      try {
        // The record's create is the marker (action 0): a period is closed, and audited, once.
        await table.transact(ownerId, [
          { kind: 'create', rowKey: recordRowKey(meter, periodKey), props: record },
          auditAction(
            {
              at: closedAt,
              kind: 'usage_period_closed',
              actor: { kind: 'timer', id: 'usageRollover' },
              cause: { kind: 'timer', id: runId, type: 'usage.rollover' },
              before: null,
              after: record,
              details: { meter, periodKey },
            },
            `rollover-${meter}-${periodKey}`,
          ),
        ]);
        closed++;
      } catch (error) {
        if (
          !(error instanceof TransactionFailedError && error.actionIndex === 0 && error.reason === 'exists')
        )
          throw error;
        alreadyClosed++;
      }
      return true;
    };

    // Listing a day is one query; fetch a few ahead, since most days are empty.
    const lists = new Map<string, Promise<StoredEntity[]>>();
    const listDay = (index: number) => {
      const day = days[index];
      if (day === undefined || lists.has(day)) return;
      const query = table.list(rolloverPartition(day));
      // Marked handled here: a failure surfaces where the day is awaited, or not at all if never reached.
      query.catch(() => undefined);
      lists.set(day, query);
    };
    let exhausted = false;
    for (const [index, day] of days.entries()) {
      if (outOfTime()) {
        exhausted = true;
        firstPending ??= day;
        break;
      }
      for (let ahead = index; ahead < Math.min(days.length, index + 8); ahead++) listDay(ahead);
      const rows = (await lists.get(day)) ?? [];
      lists.delete(day);
      daysScanned++;
      const due = rows.filter((row) => {
        const end = Date.parse(typeof row.props.periodEnd === 'string' ? row.props.periodEnd : '');
        return Number.isNaN(end) || end <= cutoff;
      });
      let remaining = rows.length - due.length;
      // Closed rows leave the index 100 per transaction, each chunk as soon as it fills, while closing goes on.
      const partition = rolloverPartition(day);
      const removals: Promise<void>[] = [];
      let chunk: StoredEntity[] = [];
      const removeChunk = () => {
        if (chunk.length === 0) return;
        const removal = removeIndexChunk(partition, chunk);
        removal.catch(() => undefined); // surfaces below; handled here in case closing fails first
        removals.push(removal);
        chunk = [];
      };
      let removed = 0;
      let next = 0;
      await Promise.all(
        Array.from({ length: Math.min(concurrency, due.length) }, async () => {
          while (next < due.length && !outOfTime()) {
            const row = due[next++];
            if (row && (await close(row))) {
              removed++;
              chunk.push(row);
              if (chunk.length === 100) removeChunk();
            }
          }
        }),
      );
      removeChunk();
      await Promise.all(removals);
      remaining += due.length - removed;
      if (next < due.length) exhausted = true; // stopped by the budget before starting them all
      if (remaining > 0) firstPending ??= day;
    }
    const newCursor = firstPending ?? lastDay;
    if (newCursor !== cursor) {
      await table.upsert(ROLLOVER_STATE_PARTITION, ROLLOVER_CURSOR_ROW, {
        day: newCursor,
        updatedAt: closedAt,
      });
    }
    return {
      complete: !exhausted,
      closed,
      alreadyClosed,
      withoutUsage,
      moved,
      invalid,
      daysScanned,
      cursor: newCursor,
      elapsedMs: Date.now() - started,
    };
  }

  /** Deletes up to 100 closed index rows of one partition in one transaction; one by one if that fails. */
  async function removeIndexChunk(partition: string, rows: readonly StoredEntity[]) {
    try {
      await table.transact(
        partition,
        rows.map((row) => ({ kind: 'delete', rowKey: row.rowKey })),
      );
    } catch (error) {
      // Another run deleted some of them first: delete the rest individually (absent is fine).
      if (!(error instanceof TransactionFailedError)) throw error;
      await Promise.all(rows.map((row) => table.delete(partition, row.rowKey)));
    }
  }

  async function history(input: HistoryRequest): Promise<UsageHistory> {
    const parsed = historySchema.safeParse(input);
    if (!parsed.success) {
      const details: FieldIssue[] = parsed.error.issues.map((issue) => ({
        path: issue.path.map(String).join('.'),
        message: issue.message,
      }));
      throw validationError(
        'invalid_history_request',
        `Invalid usage history request: ${details.map((d) => `${d.path} ${d.message}`).join('; ')}`,
        details,
      );
    }
    const { ownerId, meter, from, to } = parsed.data;
    await deps.beforeOwner?.(ownerId);
    const [allCounters, recordRows] = await Promise.all([
      table.list(ownerId, { prefix: USAGE_PREFIX }),
      table.list(ownerId, { prefix: recordPrefix(meter) }),
    ]);
    const counterRows = allCounters.filter((row) => counterKeyParts(row.rowKey)?.meter === meter);
    const records = new Map(
      recordRows.map((row) => {
        const record = parseRow(recordSchema, row, 'usage record');
        return [record.periodKey, record] as const;
      }),
    );
    const now = clock.now().getTime();
    const periods: PeriodUsage[] = [];
    for (const row of counterRows) {
      const periodKey = counterKeyParts(row.rowKey)?.periodKey ?? '';
      const counter = parseUsageCounter(row);
      const record = records.get(periodKey);
      const fromKey = boundsFromKey(periodKey);
      const start = counter.periodStart ?? record?.periodStart ?? fromKey?.start.toISOString();
      const end = counter.periodEnd ?? record?.periodEnd ?? fromKey?.end?.toISOString() ?? null;
      if (start === undefined)
        throw new Error(`Corrupt usage counter ${ownerId}/${row.rowKey}: no period bounds`);
      if (Date.parse(start) >= to.getTime() || (end !== null && Date.parse(end) <= from.getTime())) continue;
      const ended = end !== null && Date.parse(end) <= now;
      periods.push({
        meter,
        periodKey,
        periodStart: start,
        periodEnd: end,
        status: record ? 'closed' : ended ? 'ended' : 'open',
        used: counter.used,
        fromAllowance: counter.allowanceUsed,
        fromCredits: counter.creditsUsed,
        overage: counter.overage,
        allowance: counter.allowance,
        record: record ? { used: record.used, closedAt: record.closedAt } : null,
      });
    }
    periods.sort((a, b) => Date.parse(a.periodStart) - Date.parse(b.periodStart));
    const sum = (pick: (p: PeriodUsage) => number) => periods.reduce((total, p) => total + pick(p), 0);
    return {
      ownerId,
      meter,
      from: from.toISOString(),
      to: to.toISOString(),
      periods,
      totals: {
        used: sum((p) => p.used),
        fromAllowance: sum((p) => p.fromAllowance),
        fromCredits: sum((p) => p.fromCredits),
        overage: sum((p) => p.overage),
      },
    };
  }

  return { run, history };
}
