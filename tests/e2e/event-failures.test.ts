import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHost, type TestHost, token } from '../support/harness.js';

interface PoisonItem {
  eventId: string | null;
  type: string | null;
  reason: string;
  code: string;
  attempts: number;
}

/**
 * What the processor does when applying an event fails, over the local host, the Stripe sandbox (faults
 * injected) and Azurite: transient failures are redelivered with growing delays until they apply;
 * permanent ones are poisoned at once, listed for an admin, and replayed once their cause is fixed.
 */
describe('event processing failures', () => {
  let host: TestHost;
  let admin: string;

  const sandbox = (method: string, path: string, body?: unknown) => host.sandboxOk(method, path, body);
  const summary = async (sub: string) => {
    const response = await host.call('GET', '/api/billing/summary', { token: await token({ sub }) });
    expect(response.status, response.text).toBe(200);
    return response.body as { plan: { name: string }; status: string; accessLevel: string };
  };
  const poisoned = async () => {
    const response = await host.call('GET', '/api/ops/events/poison?limit=100', { token: admin });
    expect(response.status, response.text).toBe(200);
    return (response.body as { items: PoisonItem[] }).items;
  };
  /** Pays a Pro checkout for a Stripe customer, through the sandbox (as the customer would). */
  const subscribe = async (customerId: string, ownerId: string) => {
    const prices = (await host.services.pricing.refresh()).prices;
    const session = await host.services.payments.createCheckoutSession({
      customerId,
      ownerId,
      mode: 'subscription',
      priceId: prices.get('pro_monthly')?.id ?? '',
      quantity: 1,
      successUrl: 'http://localhost/ok',
      cancelUrl: 'http://localhost/no',
      metadata: {},
      idempotencyKey: `checkout-${ownerId}`,
    });
    await sandbox('POST', `/checkout/${session.id}/pay`, {});
  };

  beforeAll(async () => {
    host = await startTestHost({
      env: {
        STRIPE_MAX_NETWORK_RETRIES: '0',
        BILLING_EVENT_RETRY_BASE_SECONDS: '1',
        BILLING_EVENT_RETRY_MAX_SECONDS: '2',
        BILLING_EVENT_MAX_ATTEMPTS: '12',
      },
    });
    admin = await token({ sub: 'ops-1', roles: ['admin'] });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('redelivers an event through a Stripe outage with growing delays, and applies it once it ends', async () => {
    const customerId = await host.services.customers.ensure('u-outage');
    await subscribe(customerId, 'u-outage');
    await host.settle();
    expect(await summary('u-outage')).toMatchObject({ plan: { name: 'pro' }, status: 'active' });
    const [subscription] = await host.services.payments.listSubscriptions(customerId);

    // Six reads in a row fail: the host's own redelivery (3 deliveries a second apart here) would have
    // poisoned the event; the processor's back-off (1 s, 2 s, 2 s, …) outlasts it.
    await sandbox('POST', '/_sandbox/faults', {
      method: 'GET',
      pathPrefix: '/v1/subscriptions',
      status: 503,
      count: 6,
    });
    const started = Date.now();
    await sandbox('POST', `/_sandbox/subscriptions/${subscription?.id}/status`, { status: 'unpaid' });
    await host.settle();

    expect((await sandbox('GET', '/_sandbox/faults')).faults).toEqual([]);
    // Six failed attempts, each waiting at least three quarters of 1, 2, 2, 2, 2, 2 seconds.
    expect(Date.now() - started).toBeGreaterThan(8_000);
    expect(await summary('u-outage')).toMatchObject({ status: 'unpaid', accessLevel: 'locked' });
    expect(await poisoned()).toEqual([]);
    expect(host.worker?.poisoned()).toEqual([]);
  }, 60_000);

  it('poisons an event for an unknown customer at once, and a replay applies it once the customer is mapped', async () => {
    // A Stripe customer no owner of ours knows (made in the Dashboard, say).
    const { id: customerId } = await host.services.payments.createCustomer({
      ownerId: 'u-stranger',
      idempotencyKey: 'stranger-customer',
    });
    await subscribe(customerId, 'u-stranger');
    await host.settle();

    const items = await poisoned();
    expect(items.length).toBeGreaterThan(0);
    for (const item of items) {
      expect(item).toMatchObject({ reason: 'permanent', code: 'unknown_customer', attempts: 1 });
    }
    expect(items.map((i) => i.type)).toContain('customer.subscription.created');
    expect(host.worker?.poisoned()).toEqual([]);
    expect(await summary('u-stranger')).toMatchObject({ plan: { name: 'free' } });

    // The cause fixed: the customer mapped to its owner (as a support engineer would).
    await host.services.tables.billing.upsert(`customer:${customerId}`, 'ref', { ownerId: 'u-stranger' });
    await host.services.tables.billing.upsert('u-stranger', 'customer', { customerId });

    const replay = await host.call('POST', '/api/ops/events/poison/replay', { token: admin, body: {} });
    expect(replay.status, replay.text).toBe(200);
    expect(replay.body).toMatchObject({ notFound: [], more: false });
    expect([...(replay.body as { replayed: string[] }).replayed].sort()).toEqual(
      items.map((i) => i.eventId).sort(),
    );
    await host.settle();
    expect(await summary('u-stranger')).toMatchObject({ plan: { name: 'pro' }, status: 'active' });
    expect(await poisoned()).toEqual([]);
  }, 60_000);

  it('needs the admin role: user and service tokens get 403', async () => {
    const user = await token({ sub: 'u-outage' });
    const service = await host.serviceToken();
    for (const caller of [user, service]) {
      const list = await host.call('GET', '/api/ops/events/poison', { token: caller });
      expect(list.status, list.text).toBe(403);
      expect(list.body).toMatchObject({ code: 'admin_role_required' });
      const replay = await host.call('POST', '/api/ops/events/poison/replay', { token: caller, body: {} });
      expect(replay.status, replay.text).toBe(403);
    }
    expect((await host.call('GET', '/api/ops/events/poison')).status).toBe(401);
  });

  it('answers bad input with problem+json', async () => {
    const cases: Array<[string, string, unknown, string]> = [
      ['GET', '/api/ops/events/poison?limit=0', undefined, 'invalid_query'],
      ['GET', '/api/ops/events/poison?limit=abc', undefined, 'invalid_query'],
      ['GET', '/api/ops/events/poison?cursor=%21%21', undefined, 'invalid_query'],
      ['GET', '/api/ops/events/poison?other=1', undefined, 'invalid_query'],
      ['POST', '/api/ops/events/poison/replay', { eventIds: ['not-an-event'] }, 'invalid_body'],
      ['POST', '/api/ops/events/poison/replay', { all: true }, 'invalid_body'],
      ['POST', '/api/ops/events/poison/replay', '{"eventIds":', 'malformed_json'],
    ];
    for (const [method, path, body, code] of cases) {
      const response = await host.call(method, path, {
        token: admin,
        ...(body === undefined ? {} : { body }),
      });
      expect(response.status, `${method} ${path}: ${response.text}`).toBe(400);
      expect(response.headers.get('content-type')).toMatch(/problem\+json/);
      expect(response.body).toMatchObject({ code });
    }
    // No body at all means "all"; with nothing poisoned, nothing is replayed.
    const empty = await host.call('POST', '/api/ops/events/poison/replay', { token: admin });
    expect(empty.status, empty.text).toBe(200);
    expect(empty.body).toEqual({ replayed: [], notFound: [], more: false });
  });
});
