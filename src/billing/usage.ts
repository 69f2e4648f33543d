import { z } from 'zod';
import type { OwnerId } from './ids.js';
import type { UsagePeriod } from './periods.js';
import type { EntityTable } from './store.js';

/** Consumable meters; each has a counter row per owner and period. */
export type MeterName = 'executions';

export const usageRowKey = (meter: MeterName, period: UsagePeriod) => `usage|${meter}|${period.key}`;

const counterSchema = z.object({ used: z.number().int().nonnegative() });

export interface UsageReader {
  used(ownerId: OwnerId, meter: MeterName, period: UsagePeriod): Promise<number>;
}

export function createUsageReader(table: EntityTable): UsageReader {
  return {
    async used(ownerId, meter, period) {
      const row = await table.get(ownerId, usageRowKey(meter, period));
      if (!row) return 0;
      const parsed = counterSchema.safeParse(row.props);
      if (!parsed.success) throw new Error(`Corrupt usage counter ${ownerId}/${row.rowKey}`);
      return parsed.data.used;
    },
  };
}
