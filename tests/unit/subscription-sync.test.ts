import { describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { createCustomers } from '../../src/billing/customers.js';
import { createSubscriptionSync, duplicateAuditKey, type SyncCause } from '../../src/billing/lifecycle.js';
import { SUBSCRIPTION_ROW } from '../../src/billing/owner/keys.js';
import type { DuplicateCancellation, PaymentsGateway, SubscriptionInfo } from '../../src/billing/payments.js';
import { parseSubscriptionRow } from '../../src/billing/subscription.js';
import { gatewayDouble } from '../support/gateway-double.js';
import { manualClock, memoryServices } from '../support/memory.js';
import { priceInfo, subscriptionInfo } from '../support/stripe-fixtures.js';

/**
 * The sync's decisions about what Stripe lists, on the memory store with a payments double that lists
 * what each test says and records cancellations. (The same paths run against the Stripe sandbox in
 * tests/e2e/stripe-convergence.test.ts; these cover shapes the sandbox cannot be made to list.)
 */
const price = priceInfo;
const sub = (overrides: Parameters<typeof subscriptionInfo>[0] = {}) =>
  subscriptionInfo({
    billingCycleAnchor: new Date('2026-10-01T00:00:00Z'),
    created: new Date('2026-10-01T00:00:00Z'),
    ...overrides,
  });

function setup() {
  const clock = manualClock('2026-11-15T12:00:00.000Z');
  const services = memoryServices({}, clock);
  const table = services.tables.billing;
  let listed: SubscriptionInfo[] = [];
  const cancelled: string[] = [];
  const payments: PaymentsGateway = gatewayDouble({
    listSubscriptions: async () => listed,
    async cancelDuplicateSubscription(subscriptionId): Promise<DuplicateCancellation> {
      cancelled.push(subscriptionId);
      // Stripe's side after the call: cancelled at once.
      listed = listed.map((s) => (s.id === subscriptionId ? { ...s, status: 'canceled' } : s));
      return { subscriptionId, refund: { id: `re_${subscriptionId}`, amount: 2_000, currency: 'usd' } };
    },
  });
  const sync = createSubscriptionSync({
    table,
    owners: services.owners,
    customers: createCustomers({ table, payments }),
    payments,
    catalog,
    dunning: services.config.dunning,
    clock,
  });
  let n = 0;
  const event = (): SyncCause => ({ kind: 'event', id: `evt_${++n}`, type: 'customer.subscription.updated' });
  const state = async () => {
    const row = await table.get('u1', SUBSCRIPTION_ROW);
    return row ? parseSubscriptionRow('u1', row.props) : undefined;
  };
  const rows = async () => (await table.list('u1')).map((r) => r.rowKey);
  return {
    services,
    sync,
    cancelled,
    event,
    state,
    rows,
    list: (subs: SubscriptionInfo[]) => {
      listed = subs;
    },
    async map() {
      await table.upsert('customer:cus_1', 'ref', { ownerId: 'u1' });
      await table.create('u1', 'customer', { customerId: 'cus_1' });
    },
  };
}

describe('subscription sync: what Stripe lists', () => {
  it('ends a paid plan when Stripe lists no subscription of ours (fails closed)', async () => {
    const t = setup();
    await t.map();
    t.list([sub()]);
    await t.sync.syncCustomer('cus_1', t.event());
    expect(await t.state()).toMatchObject({ plan: 'pro', status: 'active' });

    t.list([]);
    const outcome = await t.sync.syncCustomer('cus_1', t.event());
    expect(outcome.kind).toBe('applied');
    expect(await t.state()).toMatchObject({ status: 'canceled', stripeStatus: 'canceled' });
    const caps = await t.services.entitlements.check({
      subject: { userId: 'u1' },
      feature: 'ai_nodes',
    });
    expect(caps).toMatchObject({ allowed: false, plan: 'free' });
  });

  it('ignores subscriptions on prices that are not ours, reports them, and applies ours', async () => {
    const t = setup();
    await t.map();
    const weekly = sub({
      id: 'sub_weekly',
      created: new Date('2026-11-10T00:00:00Z'),
      items: [
        { id: 'si_w', price: price({ id: 'price_w', lookupKey: null, interval: 'week' }), quantity: 1 },
      ],
    });
    t.list([weekly, sub()]);
    const outcome = await t.sync.syncCustomer('cus_1', t.event());
    expect(outcome).toMatchObject({ kind: 'applied', foreign: ['sub_weekly'] });
    expect(await t.state()).toMatchObject({ plan: 'pro', stripeSubscriptionId: 'sub_1' });
  });

  it('keeps the subscription paid first, cancels and refunds the other once, and audits both steps', async () => {
    const t = setup();
    await t.map();
    const team = catalog.team.prices;
    if (!team) throw new Error('team must be priced');
    const second = sub({
      id: 'sub_2',
      created: new Date('2026-10-01T00:05:00Z'),
      items: [
        { id: 'si_2', price: price({ id: 'price_team', lookupKey: team.monthly.lookupKey }), quantity: 3 },
      ],
    });
    t.list([second, sub()]);
    const outcome = await t.sync.syncCustomer('cus_1', t.event());
    expect(outcome).toMatchObject({ kind: 'applied', duplicatesCancelled: ['sub_2'] });
    expect(t.cancelled).toEqual(['sub_2']);
    expect(await t.state()).toMatchObject({ plan: 'pro', stripeSubscriptionId: 'sub_1' });
    const audit = await t.services.tables.billing.get('u1', duplicateAuditKey(second));
    expect(audit?.props).toMatchObject({
      kind: 'duplicate_subscription',
      state: 'cancelled',
      actorKind: 'stripe',
      causeKind: 'event',
      subscriptionId: 'sub_2',
      refundId: 're_sub_2',
      refundAmount: 2_000,
    });
    // The next event finds one live subscription: nothing is cancelled again.
    await t.sync.syncCustomer('cus_1', t.event());
    expect(t.cancelled).toEqual(['sub_2']);
  });

  it('applies an event once: a copy is caught by its marker in the transaction and changes nothing', async () => {
    const t = setup();
    await t.map();
    t.list([sub()]);
    const cause = t.event();
    expect((await t.sync.syncCustomer('cus_1', cause)).kind).toBe('applied');
    const rows = await t.rows();
    t.list([sub({ status: 'unpaid' })]);
    expect((await t.sync.syncCustomer('cus_1', cause)).kind).toBe('duplicate');
    expect(await t.rows()).toEqual(rows);
    expect(await t.state()).toMatchObject({ status: 'active' });
  });

  it('keeps the billing cycle anchor, which usage windows step from', async () => {
    const t = setup();
    await t.map();
    t.list([sub()]);
    await t.sync.syncCustomer('cus_1', t.event());
    expect((await t.state())?.billingCycleAnchor).toBe('2026-10-01T00:00:00.000Z');
  });

  it('writes nothing for a reconciler pass that finds nothing to repair, and repairs what drifted', async () => {
    const t = setup();
    await t.map();
    t.list([sub()]);
    await t.sync.syncCustomer('cus_1', t.event());
    const before = await t.rows();
    const pass = await t.sync.syncCustomer('cus_1', { kind: 'reconcile', id: 'run_1', type: 'reconcile' });
    expect(pass.kind).toBe('unchanged');
    expect(await t.rows()).toEqual(before);

    t.list([sub({ status: 'unpaid' })]);
    const repair = await t.sync.syncCustomer('cus_1', { kind: 'reconcile', id: 'run_2', type: 'reconcile' });
    expect(repair.kind).toBe('applied');
    const audits = (await t.services.tables.billing.list('u1', { prefix: 'audit|' })).filter(
      (row) => row.props.causeKind === 'reconcile',
    );
    expect(audits).toHaveLength(1);
    expect(audits[0]?.props).toMatchObject({ actor: 'reconciler', causeId: 'run_2' });
  });
});
