import { z } from 'zod';
import { type Catalog, INTERVALS, PLAN_NAMES } from './catalog.js';
import type { Clock } from './clock.js';
import type { PaymentsGateway, PriceInfo } from './payments.js';
import type { EntityTable } from './store.js';

/**
 * Live prices from the payment processor, cached in Table Storage so `/api/plans` and checkout keep
 * working when Stripe does not answer: fresh cache -> served; stale cache -> refreshed, or served and
 * marked stale if Stripe fails; no cache and Stripe down -> no prices (limits are still served).
 */
export interface PricingSnapshot {
  readonly prices: ReadonlyMap<string, PriceInfo>;
  readonly fetchedAt: Date;
  readonly stale: boolean;
}

export interface Pricing {
  /** `undefined` only when nothing was ever fetched and Stripe is unreachable now. */
  current(): Promise<PricingSnapshot | undefined>;
  /** Fetches now and stores; throws when Stripe fails. For the refresh timer and for checkout misses. */
  refresh(): Promise<PricingSnapshot>;
}

const PARTITION = 'pricing';
const ROW = 'current';
const priceSchema = z.object({
  id: z.string(),
  lookupKey: z.string().nullable(),
  unitAmount: z.number().nullable(),
  currency: z.string(),
  interval: z.enum(['month', 'year']).nullable(),
  productId: z.string(),
  productMetadata: z.record(z.string(), z.string()),
});
const rowSchema = z.object({ prices: z.string(), fetchedAt: z.string() });

/** Every lookup key the catalog (and any extra products, such as credit packs) sells. */
export function catalogLookupKeys(catalog: Catalog): string[] {
  return PLAN_NAMES.flatMap((plan) => INTERVALS.flatMap((i) => catalog[plan].prices?.[i].lookupKey ?? []));
}

export function createPricing(deps: {
  readonly table: EntityTable;
  readonly payments: PaymentsGateway;
  readonly lookupKeys: readonly string[];
  readonly clock: Clock;
  /** How long a fetched price list is fresh. @default one hour */
  readonly maxAgeMs?: number;
}): Pricing {
  const { table, payments, lookupKeys, clock } = deps;
  const maxAgeMs = deps.maxAgeMs ?? 60 * 60 * 1000;
  // Per-process memo so a busy /api/plans does not read the table on every request.
  let memo: { snapshot: PricingSnapshot; until: number } | undefined;

  async function refresh(): Promise<PricingSnapshot> {
    const list = await payments.pricesByLookupKey(lookupKeys);
    const fetchedAt = clock.now();
    await table.upsert(PARTITION, ROW, { prices: JSON.stringify(list), fetchedAt: fetchedAt.toISOString() });
    const snapshot = { prices: byKey(list), fetchedAt, stale: false };
    memo = { snapshot, until: Date.now() + 60_000 };
    return snapshot;
  }

  async function cached(): Promise<PricingSnapshot | undefined> {
    const row = await table.get(PARTITION, ROW);
    if (!row) return undefined;
    const data = rowSchema.parse(row.props);
    const list = z.array(priceSchema).parse(JSON.parse(data.prices));
    const fetchedAt = new Date(data.fetchedAt);
    return { prices: byKey(list), fetchedAt, stale: clock.now().getTime() - fetchedAt.getTime() > maxAgeMs };
  }

  return {
    refresh,
    async current() {
      if (memo && memo.until > Date.now()) return memo.snapshot;
      const stored = await cached();
      if (stored && !stored.stale) {
        memo = { snapshot: stored, until: Date.now() + 60_000 };
        return stored;
      }
      try {
        return await refresh();
      } catch {
        // Stripe is down or throttling: serve what we have, marked stale (or nothing, if nothing).
        if (stored) memo = { snapshot: { ...stored, stale: true }, until: Date.now() + 10_000 };
        return stored ? { ...stored, stale: true } : undefined;
      }
    },
  };
}

function byKey(list: readonly PriceInfo[]): Map<string, PriceInfo> {
  return new Map(list.flatMap((p) => (p.lookupKey ? [[p.lookupKey, p] as const] : [])));
}
