import { isMeterName, type MeterName } from './catalog.js';
import { COUNTER_PREFIX, counterRowKey } from './owner/keys.js';
import { counterSchema, parseRow } from './owner/rows.js';
import type { UsagePeriod } from './periods.js';
import type { StoredEntity } from './store.js';

/** Consumable meters; each has a counter row per owner and period. Declared in the catalog (`METERS`). */
export type { MeterName } from './catalog.js';

/** The counter row of one meter and period in the owner's partition (`s|c|<start>|<meter>|<key>`). */
export const usageRowKey = (meter: MeterName, period: Pick<UsagePeriod, 'key' | 'start'>) =>
  counterRowKey(meter, period);

/** Row-key prefix of every counter, all meters and periods, oldest period first. */
export const USAGE_PREFIX = COUNTER_PREFIX;

/** A parsed counter row, with the split always present. */
export interface UsageCounter {
  /** Everything consumed in the period: from the allowance, from credits and beyond both. */
  readonly used: number;
  /** Of `used`, drawn on the period allowance. */
  readonly allowanceUsed: number;
  /** Of `used`, paid for with credits. */
  readonly creditsUsed: number;
  /** Of `used`, covered by neither (consumed under `monitor` or `off`). */
  readonly overage: number;
  /** The allowance last applied; `null` when unlimited. */
  readonly allowance: number | null;
  /** ISO instants; `null` only on rows written before metering stored them. */
  readonly periodStart: string | null;
  readonly periodEnd: string | null;
  readonly createdAt: string | null;
}

export const EMPTY_COUNTER: UsageCounter = {
  used: 0,
  allowanceUsed: 0,
  creditsUsed: 0,
  overage: 0,
  allowance: null,
  periodStart: null,
  periodEnd: null,
  createdAt: null,
};

/** @throws CorruptRowError naming the row when it does not parse */
export function parseUsageCounter(row: StoredEntity): UsageCounter {
  const data = parseRow(counterSchema, row);
  const creditsUsed = data.creditsUsed ?? 0;
  const overage = data.overage ?? 0;
  return {
    used: data.used,
    allowanceUsed: data.allowanceUsed ?? Math.max(0, data.used - creditsUsed - overage),
    creditsUsed,
    overage,
    allowance: data.allowance ?? null,
    periodStart: data.periodStart ?? null,
    periodEnd: data.periodEnd ?? null,
    createdAt: data.createdAt ?? null,
  };
}

/** Which meter and period a counter row key names (`s|c|<start>|<meter>|<periodKey>`). */
export function counterKeyParts(rowKey: string): { meter: MeterName; periodKey: string } | undefined {
  if (!rowKey.startsWith(COUNTER_PREFIX)) return undefined;
  const [, meter, periodKey] = rowKey.slice(COUNTER_PREFIX.length).split('|');
  if (meter === undefined || periodKey === undefined || !isMeterName(meter)) return undefined;
  return { meter, periodKey };
}
