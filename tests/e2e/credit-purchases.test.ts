import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { createStripeClient } from '../../src/adapters/stripe/gateway.js';
import { CREDIT_PACKS, type CreditPack, catalog } from '../../src/billing/catalog.js';
import { eventRefSchema } from '../../src/billing/event-ref.js';
import { usageRowKey } from '../../src/billing/usage.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';
import { givenOwnerRows } from '../support/memory.js';

/**
 * A credit pack bought, spent, refunded and disputed through the local host and the Stripe sandbox, with
 * Stripe's own routes: `POST /v1/refunds` (stripe.refunds.create), and the sandbox's dispute control
 * routes (`POST /_sandbox/charges/:id/dispute`, `POST /_sandbox/disputes/:id/close`), which stand in for
 * a cardholder and their bank.
 *
 * NEEDS the sandbox and gateway work of issue 8 (refunds, charges of paid sessions, disputes, and the
 * gateway's `getCharge`, `checkoutSessionForPaymentIntent` and `line_items` on `getCheckoutSession`):
 * without them the grant is refused (`not_one_line_item`) or the refund is not found.
 */

const pack = CREDIT_PACKS[0] as CreditPack;
const OWNER = 'u-credits';
const ORG = 'o-credits';
const freeExecutions = catalog.free.limits.executions ?? 0;

describe('credit packs over HTTP: grant, clawback on refund and dispute', () => {
  let host: TestHost;
  let owner: string;
  let service: string;
  let stripe: ReturnType<typeof createStripeClient>;

  const sandboxPost = (path: string, body: unknown) => host.sandboxOk('POST', path, body);

  const credits = async () =>
    z
      .object({
        balance: z.number(),
        ledger: z.array(z.object({ kind: z.string(), credits: z.number(), balanceAfter: z.number() })),
      })
      .parse((await host.call('GET', '/api/billing/credits', { token: owner })).body);

  /** Buys a pack through Checkout and pays it; answers its payment intent and charge. */
  async function buy(): Promise<{ sessionId: string; paymentIntentId: string; chargeId: string }> {
    const checkout = await host.call('POST', '/api/billing/credits/checkout', {
      token: owner,
      body: { pack: pack.id },
    });
    expect(checkout.status, checkout.text).toBe(201);
    const { sessionId } = z.object({ sessionId: z.string() }).parse(checkout.body);
    const paid = await fetch(`${host.sandbox?.url}/checkout/${sessionId}/pay`, {
      method: 'POST',
      headers: { accept: 'application/json' },
    });
    expect(paid.ok).toBe(true);
    await host.settle();
    const session = await stripe.checkout.sessions.retrieve(sessionId);
    const paymentIntentId = typeof session.payment_intent === 'string' ? session.payment_intent : '';
    const intent = await stripe.paymentIntents.retrieve(paymentIntentId);
    const chargeId = typeof intent.latest_charge === 'string' ? intent.latest_charge : '';
    expect(chargeId).toMatch(/^ch_/);
    return { sessionId, paymentIntentId, chargeId };
  }

  const consume = (key: string, quantity: number) =>
    host.call('POST', '/api/usage/consume', {
      token: service,
      body: { subject: { orgId: ORG }, meter: 'executions', quantity, idempotencyKey: key },
    });

  beforeAll(async () => {
    host = await startTestHost();
    service = await host.serviceToken();
    owner = await token({ sub: OWNER, org: ORG });
    stripe = createStripeClient({
      secretKey: host.services.config.stripe.secretKey,
      apiBase: new URL(host.sandbox?.url ?? ''),
      maxNetworkRetries: 0,
    });
    await host.call('PUT', `/api/directory/orgs/${ORG}`, { token: service, body: { creatorId: OWNER } });
    // The month's allowance is used up, so consumption draws on credits.
    const period = (await host.services.entitlements.capabilities(OWNER)).period;
    await givenOwnerRows(host.services, OWNER, {
      [usageRowKey('executions', period)]: { used: freeExecutions, allowanceUsed: freeExecutions },
    });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('a refunded pack takes its credits back, spent ones too: the balance goes below zero and draws no more', async () => {
    const { paymentIntentId } = await buy();
    expect((await credits()).balance).toBe(pack.credits);
    const spent = await consume('run-1', 1000);
    expect(spent.status, spent.text).toBe(200);
    expect(spent.body).toMatchObject({ fromCredits: 1000, creditBalance: pack.credits - 1000 });

    await stripe.refunds.create({ payment_intent: paymentIntentId });
    await host.settle();
    const after = await credits();
    expect(after.balance).toBe(-1000);
    expect(after.ledger.map((e) => [e.kind, e.credits, e.balanceAfter])).toEqual([
      ['clawback', -pack.credits, -1000],
      ['draw', -1000, pack.credits - 1000],
      ['grant', pack.credits, pack.credits],
    ]);
    const denied = await consume('run-2', 1);
    expect(denied.status, denied.text).toBe(402);
    expect(denied.body).toMatchObject({ code: 'limit_exceeded', remaining: 0 });
    const summary = await host.call('GET', '/api/billing/summary', { token: owner });
    expect(summary.body).toMatchObject({ credits: { balance: -1000 } });
    const audit = await host.services.tables.billing.list(OWNER, { prefix: 'audit|' });
    // Newest first, after the customer link the first checkout made.
    expect(audit.map((row) => row.props.kind)).toEqual([
      'credits_clawed_back',
      'credits_granted',
      'customer_linked',
    ]);
  });

  it('a dispute takes a pack back while the money is withdrawn and gives it back when won', async () => {
    const before = (await credits()).balance;
    const { chargeId } = await buy();
    expect((await credits()).balance).toBe(before + pack.credits);

    const dispute = z
      .object({ id: z.string() })
      .parse(await sandboxPost(`/_sandbox/charges/${chargeId}/dispute`, {}));
    await host.settle();
    expect((await credits()).balance).toBe(before);

    await sandboxPost(`/_sandbox/disputes/${dispute.id}/close`, { outcome: 'won' });
    await host.settle();
    const after = await credits();
    expect(after.balance).toBe(before + pack.credits);
    expect(after.ledger.slice(0, 3).map((e) => e.kind)).toEqual(['reinstate', 'clawback', 'grant']);
  });

  it('a lost dispute keeps them taken back, however often its events arrive', async () => {
    const before = (await credits()).balance;
    const { chargeId } = await buy();
    const dispute = z
      .object({ id: z.string() })
      .parse(await sandboxPost(`/_sandbox/charges/${chargeId}/dispute`, {}));
    await sandboxPost(`/_sandbox/disputes/${dispute.id}/close`, { outcome: 'lost' });
    await host.settle();
    expect((await credits()).balance).toBe(before);
    // Stripe delivers every charge and dispute event again: nothing changes.
    const customerId = (await host.services.customers.customerOf(OWNER)) ?? '';
    const again = (host.sandbox?.events() ?? []).flatMap((event) => {
      const object = z.object({ id: z.string() }).safeParse(event.data.object);
      const ref = eventRefSchema.safeParse({
        v: 2,
        eventId: event.id,
        type: event.type,
        objectId: object.success ? object.data.id : '',
        customerId: event.type.startsWith('charge.dispute.') ? null : customerId,
      });
      return ref.success && ref.data.type.startsWith('charge.') ? [ref.data] : [];
    });
    expect(again.length).toBeGreaterThanOrEqual(4);
    for (const ref of again) await host.services.events.process(ref);
    expect((await credits()).balance).toBe(before);
  });
});
