import { z } from 'zod';
import type { MeterName } from './catalog.js';
import type { OwnerId } from './ids.js';
import type { UsagePeriod } from './periods.js';
import type { EntityProps, EntityTable } from './store.js';

/** Consumable meters; each has a counter row per owner and period. Declared in the catalog (`METERS`). */
export type { MeterName } from './catalog.js';

/** The counter row of one meter and period in the owner's partition of the `billing` table. */
export const usageRowKey = (meter: MeterName, period: Pick<UsagePeriod, 'key'>) =>
  `usage|${meter}|${period.key}`;

/** Row-key prefix of every counter of one meter. */
export const usagePrefix = (meter: MeterName) => `usage|${meter}|`;

const count = z.number().int().nonnegative();

/**
 * A counter row. Only `used` is required: rows written before metering existed (and test fixtures)
 * carry nothing else, and the split defaults to "all from the allowance".
 */
const counterSchema = z.object({
  /** Everything consumed in the period: from the allowance, from credits and beyond both. */
  used: count,
  /** Of `used`, drawn on the period allowance. */
  allowanceUsed: count.optional(),
  /** Of `used`, paid for with credits. */
  creditsUsed: count.optional(),
  /** Of `used`, covered by neither (consumed under `monitor` or `off`). */
  overage: count.optional(),
  /** The allowance last applied; absent when unlimited (or for rows written before metering). */
  allowance: count.optional(),
  periodStart: z.string().optional(),
  periodEnd: z.string().optional(),
  updatedAt: z.string().optional(),
});

/** A parsed counter row, with the split always present. */
export interface UsageCounter {
  readonly used: number;
  readonly allowanceUsed: number;
  readonly creditsUsed: number;
  readonly overage: number;
  readonly allowance: number | null;
  /** ISO instants; `null` only on rows written before metering stored them. */
  readonly periodStart: string | null;
  readonly periodEnd: string | null;
}

/** @throws Error naming the row when it does not parse */
export function parseUsageCounter(ownerId: OwnerId, rowKey: string, props: EntityProps): UsageCounter {
  const parsed = counterSchema.safeParse(props);
  if (!parsed.success) throw new Error(`Corrupt usage counter ${ownerId}/${rowKey}`);
  const row = parsed.data;
  const creditsUsed = row.creditsUsed ?? 0;
  const overage = row.overage ?? 0;
  return {
    used: row.used,
    allowanceUsed: row.allowanceUsed ?? Math.max(0, row.used - creditsUsed - overage),
    creditsUsed,
    overage,
    allowance: row.allowance ?? null,
    periodStart: row.periodStart ?? null,
    periodEnd: row.periodEnd ?? null,
  };
}

export interface UsageReader {
  used(ownerId: OwnerId, meter: MeterName, period: UsagePeriod): Promise<number>;
  /** The whole counter, or `undefined` before anything was consumed in the period. */
  counter(ownerId: OwnerId, meter: MeterName, period: UsagePeriod): Promise<UsageCounter | undefined>;
}

export function createUsageReader(table: EntityTable): UsageReader {
  const counter = async (ownerId: OwnerId, meter: MeterName, period: UsagePeriod) => {
    const row = await table.get(ownerId, usageRowKey(meter, period));
    return row ? parseUsageCounter(ownerId, row.rowKey, row.props) : undefined;
  };
  return {
    async used(ownerId, meter, period) {
      return (await counter(ownerId, meter, period))?.used ?? 0;
    },
    counter,
  };
}
