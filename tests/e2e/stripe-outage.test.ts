import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createStripeClient } from '../../src/adapters/stripe/gateway.js';
import { CREDIT_PACKS, type CreditPack } from '../../src/billing/catalog.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

const pack = CREDIT_PACKS[0] as CreditPack;
const OUTAGE_SECONDS = 60;

/**
 * Stripe answers 503 to every read for a minute while a renewal payment fails, a credit pack is paid
 * and a plan is changed in the portal. Nothing is lost: each event is redelivered with growing delays
 * until Stripe answers, and the state then equals Stripe's, every credit granted exactly once. A
 * reconciler run afterwards finds nothing left to repair. Local host, Stripe sandbox, Azurite.
 */
describe(`a ${OUTAGE_SECONDS} s Stripe outage`, () => {
  let host: TestHost;
  let admin: string;
  const stripe = () =>
    createStripeClient({ secretKey: 'sk_test_sandbox', apiBase: new URL(host.sandbox?.url ?? '') });

  const sandboxPost = (path: string, body: unknown = {}) => host.sandboxOk('POST', path, body);
  const summary = async (sub: string) => {
    const response = await host.call('GET', '/api/billing/summary', { token: await token({ sub }) });
    expect(response.status, response.text).toBe(200);
    return response.body as { plan: { name: string }; status: string; currentPeriodEnd: string };
  };
  const subscribe = async (sub: string, plan: string) => {
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: await token({ sub }),
      body: { plan, interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await sandboxPost(`/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
  };
  const customerOf = async (ownerId: string) => {
    const id = await host.services.customers.customerOf(ownerId);
    if (!id) throw new Error(`no customer for ${ownerId}`);
    return id;
  };

  beforeAll(async () => {
    host = await startTestHost({
      // Growing delays capped at 8 s: enough attempts to outlast the outage by redelivery alone.
      env: {
        BILLING_EVENT_RETRY_BASE_SECONDS: '1',
        BILLING_EVENT_RETRY_MAX_SECONDS: '8',
        BILLING_EVENT_MAX_ATTEMPTS: '30',
      },
    });
    admin = await token({ sub: 'ops-outage', roles: ['admin'] });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('converges after the outage: dunning applied, credits granted once, the plan change applied', {
    timeout: 150_000,
  }, async () => {
    // Before: two Pro subscribers, and a pack checkout left open.
    await subscribe('u-out-dunning', 'pro');
    await subscribe('u-out-change', 'pro');
    const buyer = await token({ sub: 'u-out-credits' });
    const checkout = await host.call('POST', '/api/billing/credits/checkout', {
      token: buyer,
      body: { pack: pack.id },
    });
    expect(checkout.status, checkout.text).toBe(201);
    const packSession = (checkout.body as { sessionId: string }).sessionId;
    await host.settle();
    const changing = (await stripe().subscriptions.list({ customer: await customerOf('u-out-change') }))
      .data[0];
    const teamPrice = (await stripe().prices.list({ lookup_keys: ['team_monthly'] })).data[0];
    if (!changing || !teamPrice) throw new Error('setup');
    const dunningCustomer = await customerOf('u-out-dunning');
    const renewal = (await summary('u-out-dunning')).currentPeriodEnd;

    // The outage: every Stripe read (GET /v1/...) answers 503 for the next minute, by the wall clock.
    await sandboxPost('/_sandbox/faults', {
      method: 'GET',
      pathPrefix: '/v1/',
      status: 503,
      seconds: OUTAGE_SECONDS,
      clock: 'real',
    });
    const outageEnds = Date.now() + OUTAGE_SECONDS * 1000;
    // In the window: a renewal payment fails, a pack is paid, a plan is changed in the portal.
    // (The pack is paid first: moving the clock a month would expire its session.)
    await sandboxPost(`/checkout/${packSession}/pay`);
    await sandboxPost(`/_sandbox/customers/${dunningCustomer}/payment_method`, { fails: true });
    await sandboxPost('/_sandbox/clock/advance', { to: renewal });
    await stripe().subscriptions.update(changing.id, {
      items: [{ id: changing.items.data[0]?.id ?? '', price: teamPrice.id, quantity: 3 }],
      proration_behavior: 'always_invoice',
    });

    // During the outage nothing is applied and nothing is given up on.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    expect(await summary('u-out-change')).toMatchObject({ plan: { name: 'pro' } });
    const duringOutage = await host.call('GET', '/api/ops/events/poison?limit=100', { token: admin });
    expect((duringOutage.body as { items: unknown[] }).items).toEqual([]);

    // After it: redelivery applies every event.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, outageEnds - Date.now())));
    await host.settle();
    expect(await summary('u-out-dunning')).toMatchObject({ plan: { name: 'pro' }, status: 'retrying' });
    expect(await summary('u-out-change')).toMatchObject({ plan: { name: 'team' }, status: 'active' });
    const credits = z
      .object({ balance: z.number(), ledger: z.array(z.object({ kind: z.string(), ref: z.string() })) })
      .parse((await host.call('GET', '/api/billing/credits', { token: buyer })).body);
    expect(credits.balance).toBe(pack.credits);
    expect(credits.ledger.filter((entry) => entry.kind === 'grant')).toEqual([
      expect.objectContaining({ ref: packSession }),
    ]);
    const after = await host.call('GET', '/api/ops/events/poison?limit=100', { token: admin });
    expect((after.body as { items: unknown[] }).items).toEqual([]);

    // The reconciler finds nothing left to repair, and grants nothing twice.
    const run = await host.call('POST', '/api/ops/reconcile', { token: admin });
    expect(run.status, run.text).toBe(200);
    expect(run.body).toMatchObject({ changes: [], grants: [], failures: [] });
    expect((await host.call('GET', '/api/billing/credits', { token: buyer })).body).toMatchObject({
      balance: pack.credits,
    });
  });
});
