import { invalidRequest } from '../errors.js';
import { buildPrice, buildProduct } from '../objects.js';
import { idOf, type WirePrice, type WireProduct } from '../wire.js';
import { type EngineState, found, newestFirst } from './state.js';

export type Catalog = ReturnType<typeof createCatalog>;

/** Products and prices: seeded once from the options, read-only afterwards (the gateway never writes them). */
export function createCatalog(state: EngineState) {
  const { options, products, prices } = state;

  seedCatalog();

  function seedCatalog(): void {
    const byName = new Map<string, WireProduct>();
    const lookupKeys = new Set<string>();
    for (const seed of options.prices) {
      if (lookupKeys.has(seed.lookupKey))
        throw new Error(`Duplicate sandbox price lookup key "${seed.lookupKey}".`);
      lookupKeys.add(seed.lookupKey);
      if (!Number.isSafeInteger(seed.unitAmount) || seed.unitAmount < 0) {
        throw new Error(`Sandbox price "${seed.lookupKey}" needs a non-negative integer unitAmount.`);
      }
      let product = byName.get(seed.productName);
      if (!product) {
        product = buildProduct({
          name: seed.productName,
          metadata: { ...seed.productMetadata },
          created: state.now,
        });
        byName.set(seed.productName, product);
        products.set(product.id, product);
      }
      const price = buildPrice({
        productId: product.id,
        lookupKey: seed.lookupKey,
        unitAmount: seed.unitAmount,
        currency: seed.currency,
        interval: seed.recurring?.interval ?? null,
        created: state.now,
      });
      prices.set(price.id, price);
      if (product.default_price === null || product.default_price === undefined)
        product.default_price = price.id;
    }
  }

  function price(id: string, param?: string): WirePrice {
    return found(prices, 'price', id, param);
  }

  function recurringPrice(id: string, param: string): WirePrice {
    const found = price(id, param);
    if (!found.recurring) {
      throw invalidRequest(
        `The price specified (${id}) is a one-time price; subscriptions need recurring prices.`,
        param,
      );
    }
    return found;
  }

  function product(id: string): WireProduct {
    return found(products, 'product', id);
  }

  function productName(p: WirePrice): string {
    return products.get(idOf(p.product))?.name ?? 'Product';
  }

  return { price, recurringPrice, product, productName, prices: () => newestFirst(prices.values()) };
}
