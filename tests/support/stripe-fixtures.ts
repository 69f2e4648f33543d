import { catalog } from '../../src/billing/catalog.js';
import type { PriceInfo, SubscriptionInfo } from '../../src/billing/payments.js';

/**
 * The payments port's objects as a test builds them (for unit tests of the domain over a payments
 * double): a Pro monthly price and an active subscription on it, each field overridable.
 */
const pro = catalog.pro.prices;
if (!pro) throw new Error('pro must be priced');

export const priceInfo = (overrides: Partial<PriceInfo> = {}): PriceInfo => ({
  id: 'price_1',
  lookupKey: pro.monthly.lookupKey,
  unitAmount: pro.monthly.unitAmount,
  currency: pro.monthly.currency,
  interval: 'month',
  productId: 'prod_1',
  productMetadata: {},
  ...overrides,
});

export const subscriptionInfo = (overrides: Partial<SubscriptionInfo> = {}): SubscriptionInfo => ({
  id: 'sub_1',
  customerId: 'cus_1',
  status: 'active',
  items: [{ id: 'si_1', price: priceInfo(), quantity: 1 }],
  currentPeriodStart: new Date('2026-11-01T00:00:00Z'),
  currentPeriodEnd: new Date('2026-12-01T00:00:00Z'),
  billingCycleAnchor: new Date('2026-11-01T00:00:00Z'),
  cancelAtPeriodEnd: false,
  created: new Date('2026-11-01T00:00:00Z'),
  scheduleId: null,
  scheduledPhase: null,
  latestInvoiceAttempts: 0,
  metadata: {},
  ...overrides,
});
