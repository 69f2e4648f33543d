import { z } from 'zod';
import { FEATURE_NAMES, type FeatureName } from '../catalog.js';
import type { Clock } from '../clock.js';
import { validationError } from '../errors.js';
import type { OwnerId } from '../ids.js';
import { CorruptRowError } from '../owner/rows.js';
import type { EntityTable, StoredEntity } from '../store.js';

/**
 * Would-be denials across owners (`GET /api/ops/monitor`): what switching a feature to `enforce` would
 * refuse. The records themselves are `monitor|<at>|…` rows in each owner's partition (written by checks,
 * consumption and directory writes under `monitor` or a grace period, `access/would-deny.ts`); they are the
 * truth. To find the owners without scanning the table, every owner with a record is listed in a day
 * index: `ops|monitor|<YYYY-MM-DD>` / `<feature>|<ownerId>`.
 *
 * The index is a projection, written by a wrapper of the billing table (like the retention index) before
 * the transaction that creates the record: an index row can exist without its record (the transaction
 * then failed; the report reads nothing there and moves on), never a record without its index row, so a
 * crash between the two loses nothing from the report. It lists owners, it does not count: counts come
 * from the owners' own rows for the window asked, so they cannot drift. A process remembers the index rows
 * it wrote, so an owner monitored all day costs one upsert per feature and day per process.
 */

export const MONITOR_PREFIX = 'monitor|';
export const monitorIndexPartition = (day: string) => `ops|monitor|${day}`;
/** The longest window one report reads: a month of day partitions. */
export const MONITOR_WINDOW_MAX_DAYS = 31;
export const MONITOR_OWNERS_MAX = 500;

const DAY_MS = 86_400_000;
const utcDay = (at: Date) => at.toISOString().slice(0, 10);

const indexRowSchema = z.object({ ownerId: z.string().min(1), feature: z.string().min(1) });
const recordSchema = z.object({
  feature: z.string(),
  reason: z.string(),
  why: z.enum(['monitor', 'grace']),
  quantity: z.number(),
  at: z.string(),
});

/** The billing table, listing the owner of every new monitor record in the day index first. */
export function withMonitorIndex(
  table: EntityTable,
  options: { readonly memoSize?: number } = {},
): EntityTable {
  const written = new Set<string>();
  const memoSize = options.memoSize ?? 50_000;
  return {
    ...table,
    async transact(partitionKey, actions) {
      const entries = new Map<string, { day: string; feature: string }>();
      for (const action of actions) {
        if (action.kind !== 'create' || !action.rowKey.startsWith(MONITOR_PREFIX)) continue;
        // `monitor|<ISO instant>|…`: the day is the record's own, so the report's window and the index agree.
        const day = action.rowKey.slice(MONITOR_PREFIX.length, MONITOR_PREFIX.length + 10);
        const feature = action.props.feature;
        if (typeof feature !== 'string') continue;
        entries.set(`${day}|${feature}|${partitionKey}`, { day, feature });
      }
      await Promise.all(
        [...entries].map(async ([id, { day, feature }]) => {
          if (written.has(id)) return;
          await table.upsert(monitorIndexPartition(day), `${feature}|${partitionKey}`, {
            ownerId: partitionKey,
            feature,
          });
          if (written.size >= memoSize) written.clear();
          written.add(id);
        }),
      );
      return table.transact(partitionKey, actions);
    },
  };
}

export interface MonitorEntry {
  readonly ownerId: OwnerId;
  readonly feature: string;
  /** Would-be denials in the window. */
  readonly count: number;
  /** What they asked for in all (executions, workflows, …). */
  readonly quantity: number;
  /** By the reason `enforce` would have given. */
  readonly reasons: Readonly<Record<string, number>>;
  /** Let through by `monitor` enforcement; switching to `enforce` refuses these. */
  readonly monitor: number;
  /** Let through by a payment grace period (soft limits); `enforce` would still let them through. */
  readonly grace: number;
  readonly firstAt: string;
  readonly lastAt: string;
}

export interface MonitorReport {
  readonly from: string;
  readonly to: string;
  readonly feature: FeatureName | null;
  readonly entries: readonly MonitorEntry[];
  /** More owners had records than one report reads (`MONITOR_OWNERS_MAX`): narrow the window or feature. */
  readonly truncated: boolean;
}

export interface MonitorQuery {
  readonly feature?: FeatureName | undefined;
  readonly from?: Date | undefined;
  readonly to?: Date | undefined;
}

function parseWith<T>(schema: z.ZodType<T>, row: StoredEntity): T {
  const parsed = schema.safeParse(row.props);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return parsed.data;
}

export function createMonitorReports(deps: { readonly table: EntityTable; readonly clock: Clock }) {
  const { table, clock } = deps;
  return {
    /**
     * Would-be denials per owner and feature in `[from, to)` (default: the last 24 hours).
     * @throws BillingError `invalid_query` for an empty or too long window
     */
    async report(query: MonitorQuery): Promise<MonitorReport> {
      const to = query.to ?? clock.now();
      const from = query.from ?? new Date(to.getTime() - DAY_MS);
      if (from.getTime() >= to.getTime())
        throw validationError('invalid_query', 'The query is invalid. from: must be before to.', [
          { path: 'from', message: 'must be before to' },
        ]);
      if (to.getTime() - from.getTime() > MONITOR_WINDOW_MAX_DAYS * DAY_MS)
        throw validationError(
          'invalid_query',
          `The query is invalid. to: the window is at most ${MONITOR_WINDOW_MAX_DAYS} days.`,
          [{ path: 'to', message: `at most ${MONITOR_WINDOW_MAX_DAYS} days after from` }],
        );
      const days: string[] = [];
      for (let day = Date.parse(utcDay(from)); day < to.getTime(); day += DAY_MS)
        days.push(utcDay(new Date(day)));
      const prefix = query.feature === undefined ? undefined : `${query.feature}|`;
      const listed = await Promise.all(
        days.map((day) => table.list(monitorIndexPartition(day), prefix === undefined ? {} : { prefix })),
      );
      const owners = new Set<OwnerId>();
      for (const row of listed.flat()) owners.add(parseWith(indexRowSchema, row).ownerId);
      const sorted = [...owners].sort();
      const visited = sorted.slice(0, MONITOR_OWNERS_MAX);
      const range = {
        from: `${MONITOR_PREFIX}${from.toISOString()}`,
        to: `${MONITOR_PREFIX}${to.toISOString()}`,
      };
      const entries: MonitorEntry[] = [];
      // A few owners at a time: a wide report must not crowd out the requests that decide.
      for (let i = 0; i < visited.length; i += 8) {
        const batch = visited.slice(i, i + 8);
        const rows = await Promise.all(batch.map((ownerId) => table.list(ownerId, { range })));
        for (const [n, ownerId] of batch.entries())
          entries.push(...summarise(ownerId, rows[n] ?? [], query.feature));
      }
      return {
        from: from.toISOString(),
        to: to.toISOString(),
        feature: query.feature ?? null,
        entries,
        truncated: sorted.length > visited.length,
      };
    },
  };
}

export type MonitorReports = ReturnType<typeof createMonitorReports>;

function summarise(
  ownerId: OwnerId,
  rows: readonly StoredEntity[],
  feature: FeatureName | undefined,
): MonitorEntry[] {
  const byFeature = new Map<string, MonitorEntry>();
  for (const row of rows) {
    const record = parseWith(recordSchema, row);
    if (feature !== undefined && record.feature !== feature) continue;
    const seen = byFeature.get(record.feature);
    const reasons = { ...seen?.reasons };
    reasons[record.reason] = (reasons[record.reason] ?? 0) + 1;
    byFeature.set(record.feature, {
      ownerId,
      feature: record.feature,
      count: (seen?.count ?? 0) + 1,
      quantity: (seen?.quantity ?? 0) + record.quantity,
      reasons,
      monitor: (seen?.monitor ?? 0) + (record.why === 'monitor' ? 1 : 0),
      grace: (seen?.grace ?? 0) + (record.why === 'grace' ? 1 : 0),
      // Rows come in key order, which is time order.
      firstAt: seen?.firstAt ?? record.at,
      lastAt: record.at,
    });
  }
  return [...byFeature.values()].sort((a, b) => a.feature.localeCompare(b.feature));
}

export const monitorFeatureSchema = z.enum(FEATURE_NAMES);
