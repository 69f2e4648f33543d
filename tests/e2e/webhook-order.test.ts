import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUBSCRIPTION_ROW } from '../../src/billing/owner/keys.js';
import { LOCAL_DEFAULTS } from '../../src/local/defaults.js';
import type { SandboxEvent } from '../../tools/stripe-sandbox/index.js';
import { sandboxOk, startTestHost, type TestHost } from '../support/harness.js';

const OWNER = 'u-order';
const PERMUTATIONS = 6;

/** A small seeded PRNG, so a failing order can be replayed from its seed. */
function random(seed: number) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('webhook delivery order does not matter', () => {
  let origin: TestHost;
  let events: SandboxEvent[];
  let customerId: string;

  const sandboxCall = (path: string, body: unknown = {}) => sandboxOk(origin.sandbox, 'POST', path, body);

  beforeAll(async () => {
    // The lifecycle runs in the sandbox with webhook delivery off; its events are replayed below.
    origin = await startTestHost({ deliverWebhooks: false, worker: false });
    const { payments, customers, pricing } = origin.services;
    customerId = await customers.ensure(OWNER);
    const prices = (await pricing.refresh()).prices;
    const priceId = (key: string) => {
      const found = prices.get(key);
      if (!found) throw new Error(`no price ${key}`);
      return found.id;
    };
    const session = await payments.createCheckoutSession({
      customerId,
      ownerId: OWNER,
      mode: 'subscription',
      priceId: priceId('pro_monthly'),
      quantity: 1,
      successUrl: 'http://localhost/ok',
      cancelUrl: 'http://localhost/no',
      metadata: {},
      idempotencyKey: 'order-checkout',
    });
    await sandboxCall(`/checkout/${session.id}/pay`);
    const subscription = async () => {
      const [sub] = await payments.listSubscriptions(customerId);
      if (!sub) throw new Error('no subscription');
      return sub;
    };
    await payments.changePriceNow({
      subscription: await subscription(),
      priceId: priceId('team_monthly'),
      quantity: 3,
      idempotencyKey: 'order-up',
    });
    await payments.changePriceAtPeriodEnd({
      subscription: await subscription(),
      priceId: priceId('pro_monthly'),
      quantity: 1,
      idempotencyKey: 'order-down',
    });
    const renewal = new Date((await subscription()).currentPeriodEnd.getTime() + 60_000);
    await sandboxCall(`/_sandbox/customers/${customerId}/payment_method`, { fails: true });
    await sandboxCall('/_sandbox/clock/advance', { to: renewal.toISOString() });
    const invoice = (await subscription()).latestInvoiceAttempts;
    expect(invoice).toBe(1);
    // As the cancel action does: a subscription still managed by the downgrade's schedule is released first.
    const scheduled = await subscription();
    if (scheduled.scheduleId) await payments.releaseSchedule(scheduled.scheduleId, 'order-release');
    await payments.setCancelAtPeriodEnd(scheduled.id, true, 'order-cancel');
    events = origin.sandbox?.events() ?? [];
    expect(events.length).toBeGreaterThan(15);
  });
  afterAll(async () => {
    await origin?.close();
  });

  /** A fresh host with its own tables, sharing the sandbox, knowing the customer. */
  async function freshHost() {
    const host = await startTestHost({ sandbox: origin.sandbox });
    await host.services.tables.billing.upsert(`customer:${customerId}`, 'ref', { ownerId: OWNER });
    await host.services.tables.billing.upsert(OWNER, 'customer', { customerId });
    return host;
  }

  async function deliver(host: TestHost, event: SandboxEvent) {
    const payload = JSON.stringify(event, null, 2);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
      timestamp: Math.floor(Date.now() / 1000),
    });
    const response = await host.call('POST', '/api/webhooks/stripe', {
      body: payload,
      headers: { 'stripe-signature': signature },
    });
    expect(response.status, response.text).toBe(200);
  }

  async function outcome(host: TestHost) {
    await host.settle();
    const table = host.services.tables.billing;
    const row = await table.get(OWNER, SUBSCRIPTION_ROW);
    const { updatedAt: _ignored, ...state } = row?.props ?? {};
    return {
      state,
      audit: (await table.list(OWNER, { prefix: 'audit|', select: [] })).length,
      markers: (await table.list(OWNER, { prefix: 'event|', select: [] })).length,
      invoices: (await table.list(OWNER, { prefix: 'invoice|' })).map((r) => [r.rowKey, r.props.status]),
      // Both ways an event can be given up on: the processor's poison store and the host's poison queue.
      poisoned:
        (await host.services.poison.list({ limit: 100 })).items.length +
        (host.worker?.poisoned().length ?? 0),
    };
  }

  it('in order, once each: the reference state', async () => {
    const host = await freshHost();
    try {
      for (const event of events) await deliver(host, event);
      const reference = await outcome(host);
      expect(reference.state).toMatchObject({ plan: 'pro', status: 'retrying', cancelAtPeriodEnd: true });
      expect(reference.poisoned).toBe(0);
      expect(reference.audit).toBe(1);

      for (let seed = 1; seed <= PERMUTATIONS; seed++) {
        const next = random(seed);
        const copies = events.flatMap((event) =>
          Array.from({ length: 1 + Math.floor(next() * 3) }, () => event),
        );
        for (let i = copies.length - 1; i > 0; i--) {
          const j = Math.floor(next() * (i + 1));
          [copies[i], copies[j]] = [copies[j] as SandboxEvent, copies[i] as SandboxEvent];
        }
        const shuffled = await freshHost();
        try {
          // Concurrent copies: deliveries go out eight at a time.
          for (let i = 0; i < copies.length; i += 8) {
            await Promise.all(copies.slice(i, i + 8).map((event) => deliver(shuffled, event)));
          }
          const result = await outcome(shuffled);
          expect(result, `seed ${seed}`).toEqual(reference);
        } finally {
          await shuffled.close();
        }
      }
    } finally {
      await host.close();
    }
  }, 120_000);
});
