import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeClient } from '../../src/adapters/stripe/gateway.js';
import { duplicateAuditKey } from '../../src/billing/lifecycle.js';
import { LOCAL_DEFAULTS } from '../../src/local/defaults.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * Our state and Stripe's stay one: one live subscription per owner whatever was paid, and an owner
 * whose subscription Stripe no longer lists falls to free. Local host, Stripe sandbox, Azurite.
 */
describe('convergence with Stripe', () => {
  let host: TestHost;
  let stripe: Stripe;

  const sandboxPost = (path: string, body: unknown = {}) => host.sandboxCall('POST', path, body);
  const pay = (sessionId: string) => sandboxPost(`/checkout/${sessionId}/pay`);
  const summary = async (as: string) => {
    const response = await host.call('GET', '/api/billing/summary', { token: as });
    expect(response.status, response.text).toBe(200);
    return response.body as { plan: { name: string }; status: string };
  };
  const checkout = async (as: string, plan: string) => {
    const response = await host.call('POST', '/api/billing/checkout', {
      token: as,
      body: { plan, interval: 'monthly' },
    });
    expect(response.status, response.text).toBe(201);
    return (response.body as { sessionId: string }).sessionId;
  };

  beforeAll(async () => {
    host = await startTestHost();
    const sandboxUrl = host.sandbox?.url;
    if (!sandboxUrl) throw new Error('needs the sandbox');
    stripe = createStripeClient({ secretKey: 'sk_test_sandbox', apiBase: new URL(sandboxUrl) });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('expires an earlier open checkout when a new one is made, so only the last can be paid', async () => {
    const owner = await token({ sub: 'u-conv-expire' });
    const first = await checkout(owner, 'pro');
    const second = await checkout(owner, 'team');
    expect((await stripe.checkout.sessions.retrieve(first)).status).toBe('expired');
    expect((await stripe.checkout.sessions.retrieve(second)).status).toBe('open');
    expect((await pay(first)).status).toBeGreaterThanOrEqual(400);
    expect((await pay(second)).status).toBeLessThan(300);
    await host.settle();
    expect(await summary(owner)).toMatchObject({ plan: { name: 'team' }, status: 'active' });
  });

  it('ends two paid checkouts with one live subscription and one net charge, both steps audited', async () => {
    const owner = await token({ sub: 'u-conv-twice' });
    const ours = await checkout(owner, 'pro');
    const customer = await host.services.customers.customerOf('u-conv-twice');
    if (!customer) throw new Error('no customer');
    // A second session made while the first was open (another tab, a race our expiry lost): Stripe lets
    // both be paid.
    const prices = await stripe.prices.list({ lookup_keys: ['team_monthly'] });
    const teamPrice = prices.data[0]?.id;
    if (!teamPrice) throw new Error('no team price in the sandbox');
    const other = await stripe.checkout.sessions.create({
      mode: 'subscription',
      customer,
      line_items: [{ price: teamPrice, quantity: 3 }],
      success_url: 'http://localhost/ok',
      cancel_url: 'http://localhost/cancel',
    });
    expect((await pay(ours)).status).toBeLessThan(300);
    // A second later (the sandbox's clock stands still unless moved; Stripe's times are in seconds).
    const now = new Date(String((await host.sandboxOk('GET', '/_sandbox/clock')).now));
    await host.sandboxOk('POST', '/_sandbox/clock/advance', {
      to: new Date(now.getTime() + 1_000).toISOString(),
    });
    expect((await pay(other.id)).status).toBeLessThan(300);
    await host.settle();

    const subs = await stripe.subscriptions.list({ customer, status: 'all' });
    const live = subs.data.filter((s) => s.status === 'active');
    expect(live).toHaveLength(1);
    const kept = live[0];
    // The one paid first stays; the other was cancelled at once and its first invoice refunded in full.
    expect(kept?.items.data[0]?.price.lookup_key).toBe('pro_monthly');
    const cancelled = subs.data.find((s) => s.id !== kept?.id);
    expect(cancelled?.status).toBe('canceled');
    const paid = await stripe.invoices.list({ customer, status: 'paid' });
    const charged = paid.data.reduce((sum, invoice) => sum + invoice.amount_paid, 0);
    const refunds = await stripe.refunds.list({ limit: 100 });
    const refunded = refunds.data
      .filter((r) => r.metadata?.duplicateSubscription === cancelled?.id)
      .reduce((sum, refund) => sum + refund.amount, 0);
    const keptInvoice = paid.data.find((i) => i.parent?.subscription_details?.subscription === kept?.id);
    expect(refunded).toBeGreaterThan(0);
    expect(charged - refunded).toBe(keptInvoice?.amount_paid);

    expect(await summary(owner)).toMatchObject({ plan: { name: 'pro' }, status: 'active' });
    const audit = await host.services.tables.billing.get(
      'u-conv-twice',
      duplicateAuditKey({ id: cancelled?.id ?? '', created: new Date((cancelled?.created ?? 0) * 1000) }),
    );
    expect(audit?.props).toMatchObject({ kind: 'duplicate_subscription', state: 'cancelled' });
    expect(audit?.props.refundAmount).toBe(refunded);

    // Cancel and change now act on the one subscription there is.
    const cancel = await host.call('POST', '/api/billing/subscription/cancel', { token: owner });
    expect(cancel.status, cancel.text).toBe(200);
    await host.settle();
    const after = await stripe.subscriptions.list({ customer, status: 'all' });
    expect(after.data.filter((s) => s.status === 'active' && !s.cancel_at_period_end)).toHaveLength(0);
  });

  it('accepts a 200 KB signed event and applies it (the queue carries its ids only)', async () => {
    const owner = await token({ sub: 'u-conv-big' });
    expect((await pay(await checkout(owner, 'pro'))).status).toBeLessThan(300);
    await host.settle();
    const customer = await host.services.customers.customerOf('u-conv-big');
    const original = host.sandbox
      ?.events()
      .find(
        (e) => e.type === 'customer.subscription.created' && JSON.stringify(e).includes(String(customer)),
      );
    if (!original) throw new Error('no subscription event to resend');
    // The same event, grown past 200 KB as real events do (items, discounts, metadata), with a new id.
    const big = {
      ...original,
      id: `evt_big${Date.now()}`,
      data: {
        object: { ...(original.data.object as Record<string, unknown>), padding: 'x'.repeat(210_000) },
      },
    };
    const body = JSON.stringify(big);
    expect(body.length).toBeGreaterThan(200_000);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload: body,
      secret: LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
    });
    const response = await host.call('POST', '/api/webhooks/stripe', {
      body,
      headers: { 'stripe-signature': signature },
    });
    expect(response.status, response.text).toBe(200);
    await host.settle();
    // Applied: its marker was written in the owner's partition (exactly once).
    expect(await host.services.tables.billing.get('u-conv-big', `event|${big.id}`)).toBeDefined();
  });

  it('shows a subscription that ended after a cancel at period end as ended, though Stripe keeps the flag', async () => {
    const owner = await token({ sub: 'u-conv-ended' });
    expect((await pay(await checkout(owner, 'pro'))).status).toBeLessThan(300);
    await host.settle();
    expect((await host.call('POST', '/api/billing/subscription/cancel', { token: owner })).status).toBe(200);
    await host.settle();
    const customer = await host.services.customers.customerOf('u-conv-ended');
    if (!customer) throw new Error('no customer');
    const [sub] = (await stripe.subscriptions.list({ customer })).data;
    if (!sub) throw new Error('no subscription');
    await stripe.subscriptions.cancel(sub.id);
    await host.settle();
    const ended = await stripe.subscriptions.retrieve(sub.id);
    expect(ended).toMatchObject({ status: 'canceled', cancel_at_period_end: true });
    const response = await host.call('GET', '/api/billing/summary', { token: owner });
    expect(response.body).toMatchObject({
      plan: { name: 'free' },
      status: 'canceled',
      cancelAtPeriodEnd: false,
      currentPeriodEnd: null,
    });
  });
});
