import type { SandboxPriceSeed } from '../adapters/stripe/sandbox/index.js';
import { type Catalog, INTERVALS, PLAN_NAMES } from '../billing/catalog.js';

/** The sandbox's products and prices, made from the catalog so they always match it. */
export function sandboxPrices(catalog: Catalog): SandboxPriceSeed[] {
  return PLAN_NAMES.flatMap((name) =>
    INTERVALS.flatMap((interval) => {
      const price = catalog[name].prices?.[interval];
      if (!price) return [];
      return [
        {
          lookupKey: price.lookupKey,
          productName: catalog[name].displayName,
          productMetadata: { plan: name },
          unitAmount: price.unitAmount,
          currency: price.currency,
          recurring: { interval: interval === 'monthly' ? 'month' : 'year' },
        } satisfies SandboxPriceSeed,
      ];
    }),
  );
}
