import Stripe from 'stripe';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createStripeClient, createStripeGateway } from '../../src/adapters/stripe/gateway.js';
import { createWebhookVerifier } from '../../src/adapters/stripe/webhooks.js';
import { PaymentsError, type PaymentsGateway } from '../../src/billing/payments.js';
import {
  type SandboxPriceSeed,
  type StripeSandbox,
  startStripeSandbox,
} from '../../tools/stripe-sandbox/index.js';

/**
 * The payments gateway through the official SDK against the local sandbox, where a test needs what only the
 * sandbox offers: its clock (renewals, schedules made elsewhere), faults, paying a hosted Checkout page,
 * closing a dispute, its event log; and the real-Stripe shapes (pages, proration lines, weekly prices) the
 * gateway must cope with. Each port method's behaviour on any Stripe is in `payments-gateway.contract.test.ts`.
 */

const SECRET = 'whsec_gateway_test_secret';
const START = new Date('2026-01-15T12:00:00Z');
const DAY = 86_400;
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

const PRICES: SandboxPriceSeed[] = [
  {
    lookupKey: 'pro_monthly',
    productName: 'Pro',
    productMetadata: { plan: 'pro' },
    unitAmount: 2_000,
    currency: 'usd',
    recurring: { interval: 'month' },
  },
  {
    lookupKey: 'pro_yearly',
    productName: 'Pro',
    productMetadata: { plan: 'pro' },
    unitAmount: 20_000,
    currency: 'usd',
    recurring: { interval: 'year' },
  },
  {
    lookupKey: 'team_monthly',
    productName: 'Team',
    productMetadata: { plan: 'team' },
    unitAmount: 5_000,
    currency: 'usd',
    recurring: { interval: 'month' },
  },
  {
    lookupKey: 'foreign_weekly',
    productName: 'Something else',
    productMetadata: {},
    unitAmount: 700,
    currency: 'usd',
    recurring: { interval: 'week' },
  },
  {
    lookupKey: 'credits_pack',
    productName: 'Credits',
    productMetadata: { kind: 'credits' },
    unitAmount: 1_000,
    currency: 'usd',
    recurring: null,
  },
];

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const paid = z.object({
  session: z.object({
    id: z.string(),
    subscription: z.string().nullable(),
    payment_intent: z.string().nullable(),
  }),
});

async function world() {
  const sandbox: StripeSandbox = await startStripeSandbox({
    port: 0,
    webhookSecret: SECRET,
    apiVersion: Stripe.API_VERSION,
    prices: PRICES,
    startTime: START,
  });
  cleanups.push(sandbox.stop);
  const apiBase = new URL(sandbox.url);
  const stripe = createStripeClient({ secretKey: 'sk_test_gateway', apiBase, maxNetworkRetries: 0 });
  const gateway: PaymentsGateway = createStripeGateway(stripe);
  const priceIds = new Map<string, string>();
  const post = async (path: string, body?: unknown) => {
    const response = await fetch(`${sandbox.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    return { status: response.status, body: (await response.json()) as unknown };
  };
  const priceId = async (lookupKey: string) => {
    if (priceIds.size === 0) {
      const prices = await stripe.prices.list({ lookup_keys: PRICES.map((p) => p.lookupKey), limit: 10 });
      for (const p of prices.data) if (p.lookup_key) priceIds.set(p.lookup_key, p.id);
    }
    const id = priceIds.get(lookupKey);
    if (!id) throw new Error(`no price ${lookupKey}`);
    return id;
  };
  const checkout = async (input: {
    customerId: string;
    lookupKey: string;
    mode: 'subscription' | 'payment';
    quantity?: number;
    pay?: boolean;
  }) => {
    const session = await gateway.createCheckoutSession({
      customerId: input.customerId,
      ownerId: 'owner-1',
      mode: input.mode,
      priceId: await priceId(input.lookupKey),
      quantity: input.quantity ?? 1,
      successUrl: 'http://localhost/ok',
      cancelUrl: 'http://localhost/cancel',
      metadata: {},
      idempotencyKey: `checkout-${Math.random()}`,
    });
    if (input.pay === false) return { session, subscriptionId: null, paymentIntentId: null };
    const response = await post(`/checkout/${session.id}/pay`);
    expect(response.status).toBe(200);
    const done = paid.parse(response.body).session;
    return { session, subscriptionId: done.subscription, paymentIntentId: done.payment_intent };
  };
  const customer = async () =>
    gateway.createCustomer({ ownerId: 'owner-1', idempotencyKey: `cus-${Math.random()}` });
  const subscribe = async (lookupKey = 'pro_monthly', quantity = 1) => {
    const { id: customerId } = await customer();
    const { subscriptionId } = await checkout({ customerId, lookupKey, mode: 'subscription', quantity });
    if (!subscriptionId) throw new Error('no subscription');
    return { customerId, subscriptionId };
  };
  const advance = (secondsToAdd: number) => post('/_sandbox/clock/advance', { seconds: secondsToAdd });
  return { sandbox, stripe, gateway, post, priceId, checkout, customer, subscribe, advance };
}

describe('Stripe gateway against the sandbox', () => {
  it('lists every subscription of a customer, past the first page', async () => {
    const w = await world();
    const { id: customerId } = await w.customer();
    for (let i = 0; i < 23; i++)
      await w.checkout({ customerId, lookupKey: 'pro_monthly', mode: 'subscription' });
    const subs = await w.gateway.listSubscriptions(customerId);
    expect(subs).toHaveLength(23);
    expect(new Set(subs.map((s) => s.id)).size).toBe(23);
    const page = await w.stripe.subscriptions.list({ customer: customerId, limit: 20 });
    expect(page.has_more).toBe(true);
  });

  it('maps a weekly price instead of refusing it, and keeps a yearly anchor across renewals', async () => {
    const w = await world();
    const weekly = await w.subscribe('foreign_weekly');
    const sub = await w.gateway.getSubscription(weekly.subscriptionId);
    expect(sub.items[0]?.price.interval).toBe('week');
    expect(sub.currentPeriodEnd.getTime() - sub.currentPeriodStart.getTime()).toBe(7 * DAY * 1000);

    const yearly = await w.subscribe('pro_yearly');
    await w.advance(400 * DAY);
    const renewed = await w.gateway.getSubscription(yearly.subscriptionId);
    expect(renewed.billingCycleAnchor).toEqual(START);
    expect(renewed.currentPeriodStart).toEqual(new Date('2027-01-15T12:00:00Z'));
  });

  it('keeps cancel_at_period_end on the subscription once it is deleted', async () => {
    const w = await world();
    const { subscriptionId } = await w.subscribe();
    await w.gateway.setCancelAtPeriodEnd(subscriptionId, true, 'cancel-1');
    await w.advance(40 * DAY);
    const ended = await w.gateway.getSubscription(subscriptionId);
    expect(ended).toMatchObject({ status: 'canceled', cancelAtPeriodEnd: true });
  });

  it('takes the service period from the subscription line, not the proration lines listed first', async () => {
    const w = await world();
    const { subscriptionId } = await w.subscribe('pro_monthly');
    const sub = await w.gateway.getSubscription(subscriptionId);
    await w.gateway.setQuantity({ subscription: sub, quantity: 3, idempotencyKey: 'seats-1' });
    await w.advance(32 * DAY);
    const renewed = await w.gateway.getSubscription(subscriptionId);
    const [latest] = await w.gateway.listInvoices(renewed.customerId, 1);
    if (!latest) throw new Error('no invoice');
    const raw = await w.stripe.invoices.retrieve(latest.id);
    const prorations = raw.lines.data.map((l) => l.parent?.subscription_item_details?.proration);
    expect(prorations).toEqual([true, true, false]);
    expect(latest.periodStart).toEqual(renewed.currentPeriodStart);
    expect(latest.periodEnd).toEqual(renewed.currentPeriodEnd);
    expect(raw.lines.data[0]?.period.start).not.toBe(seconds(renewed.currentPeriodStart));

    // An interval change invoices at once: the credit first, then the new year.
    await w.gateway.changePriceNow({
      subscription: renewed,
      priceId: await w.priceId('pro_yearly'),
      quantity: 1,
      idempotencyKey: 'yearly-1',
    });
    const yearly = await w.gateway.getSubscription(subscriptionId);
    const [upgrade] = await w.gateway.listInvoices(yearly.customerId, 1);
    expect(upgrade?.billingReason).toBe('subscription_update');
    expect(upgrade?.periodStart).toEqual(yearly.currentPeriodStart);
    expect(upgrade?.periodEnd).toEqual(yearly.currentPeriodEnd);
  });

  it('schedules a change at period end from the current phase of a schedule made elsewhere', async () => {
    const w = await world();
    const { subscriptionId } = await w.subscribe('team_monthly', 3);
    const team = await w.priceId('team_monthly');
    const start = seconds(START);
    // As made in the Dashboard: the seat count drops ten days into the period.
    const schedule = await w.stripe.subscriptionSchedules.create({ from_subscription: subscriptionId });
    await w.stripe.subscriptionSchedules.update(schedule.id, {
      phases: [
        { items: [{ price: team, quantity: 3 }], start_date: start, end_date: start + 10 * DAY },
        { items: [{ price: team, quantity: 2 }], duration: { interval: 'month' } },
      ],
    });
    await w.advance(11 * DAY);
    const sub = await w.gateway.getSubscription(subscriptionId);
    expect(sub.scheduleId).toBe(schedule.id);
    // Restating the running phase from the period start is what Stripe refuses.
    await expect(
      w.stripe.subscriptionSchedules.update(schedule.id, {
        phases: [
          {
            items: [{ price: team, quantity: 2 }],
            start_date: start,
            end_date: seconds(sub.currentPeriodEnd),
          },
        ],
      }),
    ).rejects.toMatchObject({ statusCode: 400, param: 'phases[0][start_date]' });

    const pro = await w.priceId('pro_monthly');
    await w.gateway.changePriceAtPeriodEnd({
      subscription: sub,
      priceId: pro,
      quantity: 1,
      idempotencyKey: 'down-1',
    });
    const updated = await w.stripe.subscriptionSchedules.retrieve(schedule.id);
    expect(updated.phases.map((p) => p.start_date)).toEqual([
      start + 10 * DAY,
      seconds(sub.currentPeriodEnd),
    ]);
    const after = await w.gateway.getSubscription(subscriptionId);
    expect(after.scheduledPhase).toMatchObject({ scheduleId: schedule.id, price: { id: pro }, quantity: 1 });
  });

  // The contract suite covers open, expired and missing sessions; only the sandbox can pay one from code.
  it('expires a completed checkout session without error, and without changing it', async () => {
    const w = await world();
    const { id: customerId } = await w.customer();
    const done = await w.checkout({ customerId, lookupKey: 'credits_pack', mode: 'payment' });
    await w.gateway.expireCheckoutSession(done.session.id, 'expire-paid');
    expect((await w.gateway.getCheckoutSession(done.session.id)).status).toBe('complete');
    expect(w.sandbox.events().filter((e) => e.type === 'checkout.session.expired')).toHaveLength(0);
  });

  it('finds paid credit-pack sessions with their line items, by time and by payment intent', async () => {
    const w = await world();
    const { id: customerId } = await w.customer();
    const bought = await w.checkout({ customerId, lookupKey: 'credits_pack', mode: 'payment', quantity: 2 });
    await w.checkout({ customerId, lookupKey: 'pro_monthly', mode: 'subscription' });
    await w.checkout({ customerId, lookupKey: 'credits_pack', mode: 'payment', pay: false });
    const page = await w.gateway.listPaidPaymentSessions({ since: START, cursor: null, limit: 10 });
    expect(page.nextCursor).toBeNull();
    expect(page.items).toHaveLength(1);
    const pack = await w.priceId('credits_pack');
    expect(page.items[0]).toMatchObject({
      id: bought.session.id,
      mode: 'payment',
      status: 'complete',
      paymentStatus: 'paid',
      amountTotal: 2_000,
      currency: 'usd',
      created: START,
      lineItems: [{ priceId: pack, quantity: 2 }],
    });
    const later = await w.gateway.listPaidPaymentSessions({
      since: new Date(START.getTime() + 1000),
      cursor: null,
      limit: 10,
    });
    expect(later.items).toEqual([]);
    if (!bought.paymentIntentId) throw new Error('no payment intent');
    const found = await w.gateway.checkoutSessionForPaymentIntent(bought.paymentIntentId);
    expect(found?.id).toBe(bought.session.id);
    expect(await w.gateway.checkoutSessionForPaymentIntent('pi_unknown')).toBeNull();
    expect((await w.gateway.getCheckoutSession(bought.session.id)).lineItems).toEqual([
      { priceId: pack, quantity: 2 },
    ]);
  });

  it('refunds a pack in part with POST /v1/refunds, emitting charge.refunded with the customer', async () => {
    const w = await world();
    const { id: customerId } = await w.customer();
    const { paymentIntentId } = await w.checkout({
      customerId,
      lookupKey: 'credits_pack',
      mode: 'payment',
      quantity: 3,
    });
    if (!paymentIntentId) throw new Error('no payment intent');
    const intent = await w.stripe.paymentIntents.retrieve(paymentIntentId);
    const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
    expect(chargeId).toMatch(/^ch_/);
    await w.stripe.refunds.create({ payment_intent: paymentIntentId, amount: 1_000 });
    const refunded = w.sandbox.events().filter((e) => e.type === 'charge.refunded');
    expect(refunded).toHaveLength(1);
    expect(refunded[0]?.data.object).toMatchObject({
      id: chargeId,
      customer: customerId,
      amount_refunded: 1_000,
    });
    await w.stripe.refunds.create({ charge: chargeId });
    expect((await w.gateway.getCharge(chargeId)).amountRefunded).toBe(3_000);
    await expect(w.stripe.refunds.create({ charge: chargeId })).rejects.toMatchObject({
      statusCode: 400,
      code: 'charge_already_refunded',
    });
  });

  it('opens and closes a dispute through the control API, with Stripe’s events', async () => {
    const w = await world();
    const { id: customerId } = await w.customer();
    const { paymentIntentId } = await w.checkout({ customerId, lookupKey: 'credits_pack', mode: 'payment' });
    const intent = await w.stripe.paymentIntents.retrieve(paymentIntentId ?? '');
    const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
    const before = w.sandbox.events().length;
    const opened = await w.post(`/_sandbox/charges/${chargeId}/dispute`, {});
    expect(opened.status).toBe(200);
    const disputeId = z.object({ id: z.string() }).parse(opened.body).id;
    await expect(w.stripe.refunds.create({ charge: chargeId })).rejects.toMatchObject({
      code: 'charge_disputed',
    });
    expect((await w.post(`/_sandbox/disputes/${disputeId}/close`, { outcome: 'won' })).status).toBe(200);
    const events = w.sandbox.events().slice(before);
    expect(events.map((e) => e.type)).toEqual([
      'charge.dispute.created',
      'charge.dispute.funds_withdrawn',
      'charge.dispute.closed',
      'charge.dispute.funds_reinstated',
    ]);
    const object = z.object({ charge: z.string(), payment_intent: z.string() }).loose();
    expect(object.parse(events[0]?.data.object)).toMatchObject({
      charge: chargeId,
      payment_intent: paymentIntentId,
    });
    expect(events[0]?.data.object).not.toHaveProperty('customer');
    expect((await w.gateway.getDispute(disputeId)).status).toBe('won');
  });

  it('fails every read for a while with a timed fault, and maps it to a transient error with its cause', async () => {
    const w = await world();
    const { subscriptionId } = await w.subscribe();
    const fault = await w.post('/_sandbox/faults', {
      method: 'GET',
      pathPrefix: '/',
      status: 503,
      seconds: 60,
      clock: 'sandbox',
    });
    expect(fault.status).toBe(200);
    for (let i = 0; i < 3; i++) {
      const error = await w.gateway.getSubscription(subscriptionId).then(
        () => null,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(PaymentsError);
      expect(error).toMatchObject({ code: 'unavailable', transient: true });
      expect(error instanceof Error ? error.cause : null).toBeInstanceOf(Stripe.errors.StripeAPIError);
    }
    await expect(w.gateway.listOpenCheckoutSessions('cus_x')).rejects.toMatchObject({ code: 'unavailable' });
    // Writes still work, and the outage ends with the sandbox clock.
    await w.gateway.createCustomer({ ownerId: 'o', idempotencyKey: 'during-outage' });
    await w.advance(61);
    expect((await w.gateway.getSubscription(subscriptionId)).id).toBe(subscriptionId);
  });

  it('accepts only this API version’s Checkout ui_mode values', async () => {
    const w = await world();
    const price = await w.priceId('pro_monthly');
    const params: Stripe.Checkout.SessionCreateParams = {
      mode: 'subscription',
      line_items: [{ price, quantity: 1 }],
    };
    const hosted = await w.stripe.checkout.sessions.create({ ...params, ui_mode: 'hosted_page' });
    expect(hosted.ui_mode).toBe('hosted_page');
    await expect(w.stripe.checkout.sessions.create({ ...params, ui_mode: 'hosted' })).rejects.toMatchObject({
      statusCode: 400,
      param: 'ui_mode',
    });
  });
});

describe('webhook verifier', () => {
  const payload = JSON.stringify({ id: 'evt_1', object: 'event' });
  const at = new Date('2026-01-15T12:00:00Z');
  const verifier = createWebhookVerifier({ secret: SECRET, toleranceSeconds: 300, clock: { now: () => at } });
  const header = (secret: string, timestamp: number) =>
    Stripe.webhooks.generateTestHeaderString({ payload, secret, timestamp });

  it.each([
    ['a fresh signature', header(SECRET, seconds(at) - 10), null],
    ['an old signature', header(SECRET, seconds(at) - 301), 'signature_timestamp_stale'],
    ['a signature with another secret', header('whsec_other', seconds(at)), 'signature_invalid'],
    ['an old signature with another secret', header('whsec_other', seconds(at) - 900), 'signature_invalid'],
  ])('classifies %s without reading the message', (_, signature, code) => {
    if (code === null) expect(verifier.verify(payload, signature)).toMatchObject({ id: 'evt_1' });
    else expect(() => verifier.verify(payload, signature)).toThrow(expect.objectContaining({ code }));
  });
});
