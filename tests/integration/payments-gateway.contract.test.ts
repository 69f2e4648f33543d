import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CheckoutRequest,
  CONTRACT_INVOICE_METADATA,
  type EventSummary,
} from '../../src/billing/payments.js';
import { type ContractPrice, eventually, type PaymentsDriver } from '../support/payments-driver/index.js';
import { realStripeDriver, realStripeKey } from '../support/payments-driver/real-stripe.js';
import { sandboxDriver } from '../support/payments-driver/sandbox.js';

/**
 * The `PaymentsGateway` port's contract: every method, the same tests on every Stripe the gateway talks to.
 * It always runs on the local sandbox; with a real test-mode key in STRIPE_SECRET_KEY (and no
 * STRIPE_API_BASE) it also runs on real Stripe, which is how the sandbox is held to Stripe. What only the
 * sandbox can do (its clock, faults, closing disputes) is tested in `stripe-gateway.test.ts` instead.
 */
function paymentsGatewayContract(makeDriver: () => Promise<PaymentsDriver>): void {
  let d: PaymentsDriver;
  beforeAll(async () => {
    d = await makeDriver();
  }, 120_000);
  afterAll(async () => d?.cleanup(), 120_000);

  const key = () => crypto.randomUUID();
  const checkout = async (
    customerId: string,
    price: ContractPrice,
    overrides: Partial<CheckoutRequest> = {},
  ): Promise<Awaited<ReturnType<PaymentsDriver['gateway']['createCheckoutSession']>>> =>
    d.gateway.createCheckoutSession({
      customerId,
      ownerId: 'owner-contract',
      mode: price === 'credits_pack' ? 'payment' : 'subscription',
      priceId: await d.priceId(price),
      quantity: 1,
      successUrl: 'https://example.com/billing/done',
      cancelUrl: 'https://example.com/billing/cancel',
      metadata: {},
      idempotencyKey: key(),
      ...overrides,
    });
  const get = (id: string) => d.gateway.getSubscription(id);

  it('createCustomer: one customer per idempotency key, however many calls race', async () => {
    const shared = key();
    const create = () => d.gateway.createCustomer({ ownerId: 'owner-contract', idempotencyKey: shared });
    const [a, b] = await Promise.all([create(), create()]);
    d.track(a.id);
    expect(a.id).toMatch(/^cus_/);
    expect(b.id).toBe(a.id);
    expect(await d.customer()).not.toBe(a.id);
  });

  it('pricesByLookupKey: the active prices asked for, with interval and product metadata', async () => {
    const found = await d.gateway.pricesByLookupKey([
      d.lookupKey('pro_monthly'),
      d.lookupKey('credits_pack'),
      'no_such_lookup_key_contract',
    ]);
    const byKey = new Map(found.map((p) => [p.lookupKey, p]));
    expect(found).toHaveLength(2);
    expect(byKey.get(d.lookupKey('pro_monthly'))).toMatchObject({
      id: await d.priceId('pro_monthly'),
      unitAmount: 2_000,
      currency: 'usd',
      interval: 'month',
      productMetadata: { plan: 'pro' },
    });
    expect(byKey.get(d.lookupKey('credits_pack'))).toMatchObject({
      unitAmount: 1_000,
      interval: null,
      productMetadata: { kind: 'credits' },
    });
  });

  it('createCheckoutSession and getCheckoutSession: an open session, read back with its line items', async () => {
    const customerId = await d.customer();
    const session = await checkout(customerId, 'team_monthly', { quantity: 3, metadata: { plan: 'team' } });
    expect(session).toMatchObject({
      mode: 'subscription',
      status: 'open',
      paymentStatus: 'unpaid',
      customerId,
      subscriptionId: null,
      paymentIntentId: null,
      amountTotal: 15_000,
      currency: 'usd',
      metadata: { plan: 'team', ownerId: 'owner-contract' },
    });
    expect(session.url).toMatch(/^https?:\/\//);
    const team = await d.priceId('team_monthly');
    expect(await d.gateway.getCheckoutSession(session.id)).toEqual({
      ...session,
      lineItems: [{ priceId: team, quantity: 3 }],
    });
  });

  it('listOpenCheckoutSessions and expireCheckoutSession: expired once, again without error', async () => {
    const customerId = await d.customer();
    const a = await checkout(customerId, 'pro_monthly');
    const b = await checkout(customerId, 'credits_pack');
    const open = await d.gateway.listOpenCheckoutSessions(customerId);
    expect(open.map((s) => s.id).sort()).toEqual([a.id, b.id].sort());
    for (const session of open) await d.gateway.expireCheckoutSession(session.id, key());
    expect(await d.gateway.listOpenCheckoutSessions(customerId)).toEqual([]);
    await d.gateway.expireCheckoutSession(a.id, key());
    expect((await d.gateway.getCheckoutSession(a.id)).status).toBe('expired');
    await expect(d.gateway.expireCheckoutSession('cs_test_contract_missing', key())).rejects.toMatchObject({
      code: 'not_found',
    });
  });

  it('createPortalSession: a URL for the customer', async () => {
    const customerId = await d.customer();
    const { url } = await d.gateway.createPortalSession({
      customerId,
      returnUrl: 'https://example.com/account',
    });
    expect(url).toMatch(/^https?:\/\//);
  });

  it('getSubscription and listSubscriptions: mapped, every one of the customer, newest first', async () => {
    const customerId = await d.customer();
    const first = await d.subscribe(customerId, 'pro_monthly');
    const second = await d.subscribe(customerId, 'team_monthly', 2);
    const sub = await get(second);
    expect(sub).toMatchObject({
      id: second,
      customerId,
      status: 'active',
      cancelAtPeriodEnd: false,
      scheduleId: null,
      scheduledPhase: null,
      latestInvoiceAttempts: 0,
      items: [
        {
          price: {
            id: await d.priceId('team_monthly'),
            lookupKey: d.lookupKey('team_monthly'),
            interval: 'month',
          },
          quantity: 2,
        },
      ],
    });
    expect(sub.currentPeriodEnd.getTime()).toBeGreaterThan(sub.currentPeriodStart.getTime());
    expect(sub.billingCycleAnchor).toEqual(sub.currentPeriodStart);
    expect((await d.gateway.listSubscriptions(customerId)).map((s) => s.id)).toEqual([second, first]);
  });

  it('setCancelAtPeriodEnd: set, then cleared, the subscription staying active', async () => {
    const id = await d.subscribe(await d.customer(), 'pro_monthly');
    await d.gateway.setCancelAtPeriodEnd(id, true, key());
    expect(await get(id)).toMatchObject({ status: 'active', cancelAtPeriodEnd: true });
    await d.gateway.setCancelAtPeriodEnd(id, false, key());
    expect(await get(id)).toMatchObject({ status: 'active', cancelAtPeriodEnd: false });
  });

  it('setQuantity: the same item, a new quantity', async () => {
    const sub = await get(await d.subscribe(await d.customer(), 'team_monthly'));
    await d.gateway.setQuantity({ subscription: sub, quantity: 4, idempotencyKey: key() });
    expect((await get(sub.id)).items).toMatchObject([{ id: sub.items[0]?.id, quantity: 4 }]);
  });

  it('changePriceNow: the new price at once, its prorated difference invoiced and paid', async () => {
    const customerId = await d.customer();
    const sub = await get(await d.subscribe(customerId, 'pro_monthly'));
    const team = await d.priceId('team_monthly');
    await d.gateway.changePriceNow({ subscription: sub, priceId: team, quantity: 1, idempotencyKey: key() });
    expect(await get(sub.id)).toMatchObject({
      status: 'active',
      items: [{ id: sub.items[0]?.id, price: { id: team }, quantity: 1 }],
    });
    const [upgrade] = await d.gateway.listInvoices(customerId, 1);
    expect(upgrade).toMatchObject({
      subscriptionId: sub.id,
      billingReason: 'subscription_update',
      status: 'paid',
    });
    // Nearly the whole period remains: close to the full difference of the two prices (5,000 - 2,000).
    expect(upgrade?.amountPaid).toBeGreaterThan(2_900);
    expect(upgrade?.amountPaid).toBeLessThanOrEqual(3_000);
  });

  it('previewPriceChangeNow: the invoice changePriceNow then makes, changing nothing', async () => {
    const customerId = await d.customer();
    const sub = await get(await d.subscribe(customerId, 'pro_monthly'));
    const change = { subscription: sub, priceId: await d.priceId('team_monthly'), quantity: 2 };
    const preview = await d.gateway.previewPriceChangeNow(change);
    expect(preview.currency).toBe('usd');
    expect(preview.lines.some((line) => line.proration && line.amount < 0)).toBe(true);
    expect(preview.lines.some((line) => line.proration && line.amount > 0)).toBe(true);
    expect(preview.amountDue).toBe(Math.max(0, preview.total));
    // Nothing changed: the subscription and its invoices are as they were.
    expect(await get(sub.id)).toEqual(sub);
    expect(await d.gateway.listInvoices(customerId, 10)).toHaveLength(1);

    await d.gateway.changePriceNow({ ...change, idempotencyKey: key() });
    const [upgrade] = await d.gateway.listInvoices(customerId, 1);
    expect(upgrade?.billingReason).toBe('subscription_update');
    // Real Stripe prorates to the second at its own clock: a second between the two may move a cent.
    expect(Math.abs((upgrade?.amountPaid ?? 0) - preview.amountDue)).toBeLessThanOrEqual(1);
  });

  it('changePriceAtPeriodEnd and releaseSchedule: a change waiting for period end, then dropped', async () => {
    const sub = await get(await d.subscribe(await d.customer(), 'team_monthly', 3));
    const pro = await d.priceId('pro_monthly');
    await d.gateway.changePriceAtPeriodEnd({
      subscription: sub,
      priceId: pro,
      quantity: 1,
      idempotencyKey: key(),
    });
    const scheduled = await get(sub.id);
    expect(scheduled.scheduleId).toEqual(expect.any(String));
    expect(scheduled.items).toMatchObject([{ price: { id: await d.priceId('team_monthly') }, quantity: 3 }]);
    expect(scheduled.scheduledPhase).toMatchObject({
      scheduleId: scheduled.scheduleId,
      startsAt: sub.currentPeriodEnd,
      price: { id: pro },
      quantity: 1,
    });
    // A second change while the schedule exists replaces the first.
    await d.gateway.changePriceAtPeriodEnd({
      subscription: scheduled,
      priceId: pro,
      quantity: 2,
      idempotencyKey: key(),
    });
    expect((await get(sub.id)).scheduledPhase).toMatchObject({ price: { id: pro }, quantity: 2 });
    await d.gateway.releaseSchedule(scheduled.scheduleId ?? '', key());
    expect(await get(sub.id)).toMatchObject({
      scheduleId: null,
      scheduledPhase: null,
      items: [{ quantity: 3 }],
    });
  });

  it('getInvoice and listInvoices: the first invoice, paid, over the subscription’s period', async () => {
    const customerId = await d.customer();
    const sub = await get(await d.subscribe(customerId, 'team_monthly', 2));
    const invoices = await d.gateway.listInvoices(customerId, 10);
    expect(invoices).toHaveLength(1);
    const [first] = invoices;
    expect(first).toMatchObject({
      customerId,
      subscriptionId: sub.id,
      status: 'paid',
      currency: 'usd',
      amountDue: 10_000,
      amountPaid: 10_000,
      billingReason: 'subscription_create',
      periodStart: sub.currentPeriodStart,
      periodEnd: sub.currentPeriodEnd,
      number: expect.any(String),
      hostedInvoiceUrl: expect.stringMatching(/^https?:\/\//),
    });
    expect(await d.gateway.getInvoice(first?.id ?? '')).toEqual(first);
  });

  it('cancelDuplicateSubscription: canceled, its first invoice refunded once, however often it is called', async () => {
    const subscriptionId = await d.subscribe(await d.customer(), 'team_monthly', 2);
    const first = await d.gateway.cancelDuplicateSubscription(subscriptionId, 'dup-1');
    expect(first).toMatchObject({ subscriptionId, refund: { amount: 10_000, currency: 'usd' } });
    expect(first.refund?.id).toMatch(/^re_/);
    expect(await d.gateway.cancelDuplicateSubscription(subscriptionId, 'dup-1')).toEqual(first);
    // A later call with a new key (the first key expired) still refunds nothing more.
    expect(await d.gateway.cancelDuplicateSubscription(subscriptionId, 'dup-2')).toEqual(first);
    expect((await get(subscriptionId)).status).toBe('canceled');
    const refunds = await d.stripe.refunds.list({ limit: 100 });
    expect(refunds.data.filter((r) => r.metadata?.duplicateSubscription === subscriptionId)).toHaveLength(1);
  });

  it('getCharge: a pack’s payment, with what refunds took back', async () => {
    const customerId = await d.customer();
    const { paymentIntentId, chargeId } = await d.buyPacks(customerId, 3);
    expect(await d.gateway.getCharge(chargeId)).toEqual({
      id: chargeId,
      customerId,
      paymentIntentId,
      amount: 3_000,
      amountRefunded: 0,
      currency: 'usd',
      dispute: null,
    });
    await d.stripe.refunds.create({ payment_intent: paymentIntentId, amount: 1_000 });
    expect((await d.gateway.getCharge(chargeId)).amountRefunded).toBe(1_000);
  });

  it('getCharge and getDispute: a chargeback, on the charge and by itself', async () => {
    const { chargeId } = await d.disputedPayment(await d.customer());
    const charge = await eventually(async () => {
      const read = await d.gateway.getCharge(chargeId);
      if (read.dispute === null) throw new Error(`charge ${chargeId} is not disputed yet`);
      return read;
    });
    expect(charge.dispute).toMatchObject({ status: 'needs_response', amount: 1_000 });
    expect(await d.gateway.getDispute(charge.dispute?.id ?? '')).toEqual({
      id: charge.dispute?.id,
      chargeId,
      status: 'needs_response',
      amount: 1_000,
      currency: 'usd',
    });
  });

  it('listEvents: oldest first, a page at a time, from a time and of the given types', async () => {
    const since = d.now();
    const customers: string[] = [];
    for (let i = 0; i < 3; i++) customers.push(await d.customer());
    // Others may share the account (real Stripe) or the sandbox: only this test's customers are compared.
    const ours = await eventually(async () => {
      const seen: EventSummary[] = [];
      let cursor: string | null = null;
      for (let guard = 0; guard < 50; guard++) {
        const page = await d.gateway.listEvents({ since, types: ['customer.created'], cursor, limit: 2 });
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items);
        cursor = page.nextCursor;
        if (cursor === null) break;
      }
      expect(seen.every((e) => e.type === 'customer.created')).toBe(true);
      const found = seen.filter((e) => customers.includes(e.objectId ?? ''));
      if (found.length < customers.length) throw new Error('the events are not listed yet');
      return found;
    });
    expect(ours.map((e) => e.objectId)).toEqual(customers);
    expect(ours.every((e) => e.created.getTime() >= Math.floor(since.getTime() / 1000) * 1000)).toBe(true);
  });

  it('issueContractInvoice: a finalized send_invoice invoice with its line and metadata, once per contract and period', async () => {
    const customerId = await d.customer();
    const periodStart = d.now();
    const periodEnd = new Date(periodStart.getTime() + 30 * 86_400_000);
    const request = {
      customerId,
      ownerId: 'owner-contract',
      contractId: `ct_${key().replaceAll('-', '')}`,
      period: 0,
      periodStart,
      periodEnd,
      amount: 250_000,
      currency: 'usd',
      daysUntilDue: 30,
      description: 'Enterprise contract, first period',
      idempotencyKey: `contract-${key()}`,
    };
    const invoice = await d.gateway.issueContractInvoice(request);
    expect(invoice).toMatchObject({
      customerId,
      subscriptionId: null,
      status: 'open',
      collectionMethod: 'send_invoice',
      currency: 'usd',
      amountDue: 250_000,
      amountPaid: 0,
      billingReason: 'manual',
      number: expect.any(String),
      hostedInvoiceUrl: expect.stringMatching(/^https?:\/\//),
      metadata: {
        [CONTRACT_INVOICE_METADATA.owner]: 'owner-contract',
        [CONTRACT_INVOICE_METADATA.contract]: request.contractId,
        [CONTRACT_INVOICE_METADATA.period]: '0',
      },
    });
    // Due `days_until_due` after it was finalized (Stripe counts from finalization).
    const stored = await d.stripe.invoices.retrieve(invoice.id);
    const finalizedAt = stored.status_transitions.finalized_at ?? 0;
    expect(invoice.dueDate?.getTime()).toBe((finalizedAt + 30 * 86_400) * 1000);
    // Again with the same keys, and again with new keys (Stripe forgot the old ones): the same invoice.
    expect(await d.gateway.issueContractInvoice(request)).toEqual(invoice);
    expect(await d.gateway.issueContractInvoice({ ...request, idempotencyKey: `contract-${key()}` })).toEqual(
      invoice,
    );
    const listed = await d.gateway.listInvoices(customerId, 10);
    expect(listed.map((i) => i.id)).toEqual([invoice.id]);
    expect(stored.lines.data.map((line) => [line.amount, line.description])).toEqual([
      [250_000, request.description],
    ]);
    // The next period is another invoice.
    const next = await d.gateway.issueContractInvoice({
      ...request,
      period: 1,
      idempotencyKey: `contract-${key()}`,
    });
    expect(next.id).not.toBe(invoice.id);
  });

  it('maps a missing object to not_found and a refused key to authentication, with the cause', async () => {
    await expect(d.gateway.getSubscription('sub_contract_missing')).rejects.toMatchObject({
      code: 'not_found',
      transient: false,
    });
    const refused = await d
      .gatewayWithKey('not_a_stripe_key')
      .getInvoice('in_contract_missing')
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(refused).toMatchObject({ code: 'authentication', transient: false });
    expect(refused instanceof Error ? refused.cause : null).toBeInstanceOf(
      Stripe.errors.StripeAuthenticationError,
    );
  });
}

/** A live-mode key's shape, built at run time so that nothing live-looking sits in the source. */
const LIVE_LOOKING_KEY = ['sk', 'live', '51AbCdEf'].join('_');

describe('which Stripe the contract runs on', () => {
  it.each([
    [{ STRIPE_SECRET_KEY: 'sk_test_51AbCdEf' }, 'sk_test_51AbCdEf'],
    [{ STRIPE_SECRET_KEY: 'sk_test_51AbCdEf', STRIPE_API_BASE: 'http://127.0.0.1:12111' }, null],
    [{ STRIPE_SECRET_KEY: 'sk_test_localsandbox' }, null],
    [{ STRIPE_SECRET_KEY: 'sk_test_sandbox' }, null],
    [{ STRIPE_SECRET_KEY: LIVE_LOOKING_KEY }, null],
    [{}, null],
  ])('%o -> %s', (env, expected) => {
    expect(realStripeKey(env)).toBe(expected);
  });
});

describe('PaymentsGateway contract: the local Stripe sandbox', () => {
  paymentsGatewayContract(sandboxDriver);
});

const realKey = realStripeKey();
describe.skipIf(realKey === null)(
  `PaymentsGateway contract: real Stripe test mode${realKey === null ? ' (skipped: STRIPE_SECRET_KEY is not a real test key)' : ''}`,
  { timeout: 120_000 },
  () => {
    paymentsGatewayContract(() => realStripeDriver(realKey ?? ''));
  },
);
