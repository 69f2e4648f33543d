import type { SandboxPriceSeed } from '../../tools/stripe-sandbox/index.js';
import { type Catalog, CREDIT_PACKS, INTERVALS, PLAN_NAMES } from '../billing/catalog.js';

/** The sandbox's products and prices, made from the catalog (plans and credit packs) so they always match it. */
export function sandboxPrices(catalog: Catalog): SandboxPriceSeed[] {
  const packs = CREDIT_PACKS.map(
    (pack): SandboxPriceSeed => ({
      lookupKey: pack.lookupKey,
      productName: pack.displayName,
      productMetadata: { credit_pack: pack.id },
      unitAmount: pack.unitAmount,
      currency: pack.currency,
      recurring: null,
    }),
  );
  const plans = PLAN_NAMES.flatMap((name) =>
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
  return [...plans, ...packs];
}
