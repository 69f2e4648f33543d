import { InvocationContext } from '@azure/functions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStripeClient } from '../../src/adapters/stripe/gateway.js';
import { catalog } from '../../src/billing/catalog.js';
import { SEAT_GENERATION_METADATA, type SubscriptionInfo } from '../../src/billing/payments.js';
import { syncSeats } from '../../src/functions/seat-sync.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * Per-seat billing over HTTP: membership pushed by the platform, seat syncs through the queue to the
 * Stripe sandbox, its webhooks back through the processor, Azurite underneath.
 */
describe('seats follow membership end to end', () => {
  let host: TestHost;
  let service: string;
  let owner: string;
  let admin: string;
  const ownerId = 'u-seats';
  const orgId = 'o-seats';
  const included = catalog.team.limits.seats ?? 3;

  const sandboxCall = async (path: string, body: unknown = {}) => {
    const response = await fetch(`${host.sandbox?.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.status, await response.clone().text()).toBeLessThan(300);
    return (await response.json()) as Record<string, unknown>;
  };
  const subscription = async (): Promise<SubscriptionInfo> => {
    const customerId = await host.services.customers.customerOf(ownerId);
    if (!customerId) throw new Error('no customer');
    const [live] = await host.services.payments.listSubscriptions(customerId);
    if (!live) throw new Error('no subscription');
    return live;
  };
  const quantities = async () => {
    const sub = await subscription();
    const now = sub.items[0]?.quantity ?? 0;
    return { now, next: sub.scheduledPhase?.quantity ?? now };
  };
  const putMember = (userId: string, org = orgId) =>
    host.call('PUT', `/api/directory/orgs/${org}/members/${userId}`, { token: service });
  const deleteMember = (userId: string) =>
    host.call('DELETE', `/api/directory/orgs/${orgId}/members/${userId}`, { token: service });
  const seatAudits = async () =>
    (await host.services.tables.billing.list(ownerId, { prefix: 'audit|' })).filter(
      (row) => row.props.kind === 'seats_synced',
    );
  const summarySeats = async () => {
    const response = await host.call('GET', '/api/billing/summary', { token: owner });
    expect(response.status, response.text).toBe(200);
    return (response.body as { seats: { used: number; billed: number; nextPeriod: number } }).seats;
  };
  const people = async () => (await host.services.directory.counts(ownerId)).seats;

  beforeAll(async () => {
    host = await startTestHost({ env: { BILLING_SEAT_SYNC_DELAY_SECONDS: '1' } });
    service = await host.serviceToken();
    owner = await token({ sub: ownerId, org: orgId });
    admin = await token({ sub: 'ops', roles: ['admin'] });
    await host.call('PUT', `/api/directory/orgs/${orgId}`, { token: service, body: { creatorId: ownerId } });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'team', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await sandboxCall(`/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    await host.settle();
  }, 60_000);
  afterAll(async () => {
    await host?.close();
  });

  it("refuses a free owner's third person with 402", async () => {
    await host.call('PUT', '/api/directory/orgs/o-free-seats', {
      token: service,
      body: { creatorId: 'u-free' },
    });
    expect((await putMember('f1', 'o-free-seats')).status).toBe(201);
    const third = await putMember('f2', 'o-free-seats');
    expect(third.status, third.text).toBe(402);
    expect(third.body).toMatchObject({ code: 'limit_exceeded', feature: 'seats' });
  });

  it('bills the included seats at checkout', async () => {
    expect(await quantities()).toEqual({ now: included, next: included });
  });

  it('4 members -> quantity 5 after one coalesced update, invoiced now with prorations', async () => {
    const added = await Promise.all(['m1', 'm2', 'm3', 'm4'].map((u) => putMember(u)));
    expect(added.map((r) => r.status)).toEqual([201, 201, 201, 201]);
    await host.eventually(quantities, (q) => q.now === 5);
    await host.settle();
    expect(await seatAudits()).toHaveLength(1);
    const invoices = await host.services.payments.listInvoices((await subscription()).customerId, 10);
    const proration = invoices.filter((i) => i.billingReason === 'subscription_update');
    expect(proration).toHaveLength(1);
    expect(proration[0]).toMatchObject({ status: 'paid' });
    expect(proration[0]?.amountPaid).toBeGreaterThan(0);
    expect(await host.eventually(summarySeats, (s) => s.billed === 5)).toEqual({
      used: 5,
      billed: 5,
      nextPeriod: 5,
      maxSeats: null,
    });
  });

  it('removing 2 keeps 5 until the renewal, then 3', async () => {
    await Promise.all(['m1', 'm2'].map((u) => deleteMember(u)));
    expect(await host.eventually(quantities, (q) => q.next === 3)).toEqual({ now: 5, next: 3 });
    expect(await host.eventually(summarySeats, (s) => s.nextPeriod === 3)).toMatchObject({
      used: 3,
      billed: 5,
      nextPeriod: 3,
    });
    const end = (await subscription()).currentPeriodEnd;
    await sandboxCall('/_sandbox/clock/advance', { to: new Date(end.getTime() + 60_000).toISOString() });
    await host.settle();
    expect(await quantities()).toEqual({ now: 3, next: 3 });
    const invoices = await host.services.payments.listInvoices((await subscription()).customerId, 10);
    const renewal = invoices.find((i) => i.billingReason === 'subscription_cycle');
    const unit = (await subscription()).items[0]?.price.unitAmount ?? 0;
    expect(renewal?.amountDue).toBe(3 * unit);
    expect(await host.eventually(summarySeats, (s) => s.billed === 3)).toMatchObject({
      billed: 3,
      nextPeriod: 3,
    });
  });

  it('20 concurrent member PUTs and DELETEs end at the exact quantity', async () => {
    for (const u of ['c1', 'c2', 'c3', 'c4', 'c5', 'c6']) expect((await putMember(u)).status).toBe(201);
    const puts = Array.from({ length: 14 }, (_, i) => `n${i + 1}`);
    const responses = await Promise.all([
      ...puts.map((u) => putMember(u)),
      ...['c1', 'c2', 'c3', 'c4', 'c5', 'c6'].map((u) => deleteMember(u)),
    ]);
    expect(responses.every((r) => r.status === 201 || r.status === 204)).toBe(true);
    const target = Math.max(included, await people());
    expect(target).toBe(1 + 2 + 14);
    const settled = await host.eventually(quantities, (q) => q.next === target && q.now >= target);
    expect(settled.now).toBe(target);
  });

  it('a sync racing a webhook never lets an older quantity win', async () => {
    const more = ['r1', 'r2', 'r3'];
    // Syncs run in process while members arrive and Stripe's webhooks are applied by the processor.
    const racing = await Promise.all([
      ...more.map((u) => putMember(u)),
      host.services.seatSync.run(ownerId, 'timer'),
      host.services.seatSync.run(ownerId, 'timer'),
      host.services.seatSync.run(ownerId, 'membership'),
    ]);
    expect(racing.length).toBe(6);
    const target = Math.max(included, await people());
    await host.eventually(quantities, (q) => q.now === target && q.next === target);
    await host.settle();
    const sub = await subscription();
    const stamped = Number(sub.metadata[SEAT_GENERATION_METADATA]);
    const applied = (await seatAudits()).map((row) => Number(row.props.generation));
    expect(stamped).toBe(Math.max(...applied));
    expect((await summarySeats()).billed).toBe(target);
  });

  it('while past_due nothing changes; after recovery the sync applies', async () => {
    const sub = await subscription();
    const before = await quantities();
    await sandboxCall(`/_sandbox/subscriptions/${sub.id}/status`, { status: 'past_due' });
    await host.settle();
    expect((await putMember('pd1')).status).toBe(201);
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await host.settle();
    expect(await quantities()).toEqual(before);
    await sandboxCall(`/_sandbox/subscriptions/${sub.id}/status`, { status: 'active' });
    const target = Math.max(included, await people());
    expect(await host.eventually(quantities, (q) => q.now === target)).toMatchObject({ now: target });
  });

  it('drift injected in Stripe is repaired by seatSync and audited; the ops route runs it too', async () => {
    const sub = await subscription();
    const target = Math.max(included, await people());
    const stripe = createStripeClient({
      secretKey: 'sk_test_localsandbox',
      apiBase: new URL(host.sandbox?.url ?? ''),
    });
    // Nothing hears of it: webhooks off, as when an event is lost.
    await sandboxCall('/_sandbox/webhooks', { enabled: false });
    const itemId = sub.items[0]?.id ?? '';
    await stripe.subscriptions.update(sub.id, {
      items: [{ id: itemId, quantity: 2 }],
      proration_behavior: 'none',
    });
    const logs: string[] = [];
    await syncSeats(
      host.services,
      new InvocationContext({
        functionName: 'seatSync',
        logHandler: (_level, ...args) => logs.push(args.join(' ')),
      }),
    );
    expect(logs.join('\n')).toMatch(/1 repaired/);
    expect(await quantities()).toEqual({ now: target, next: target });
    const repair = (await seatAudits()).find((row) => row.props.causeType === 'timer');
    expect(repair?.props).toMatchObject({ causeKind: 'seat_sync', actor: 'seat_sync' });

    await stripe.subscriptions.update(sub.id, {
      items: [{ id: itemId, quantity: 1 }],
      proration_behavior: 'none',
    });
    const ops = await host.call('POST', '/api/ops/seats/sync', { token: admin, body: { ownerId } });
    expect(ops.status, ops.text).toBe(200);
    expect(ops.body).toMatchObject({ examined: 1, repaired: [{ ownerId, after: { now: target } }] });
    expect((await host.call('POST', '/api/ops/seats/sync', { token: owner })).status).toBe(403);
    await sandboxCall('/_sandbox/webhooks', { enabled: true });
  });

  it('a declined seat increase follows dunning: the member stays added, the invoice stays open', async () => {
    const customerId = (await subscription()).customerId;
    await sandboxCall(`/_sandbox/customers/${customerId}/payment_method`, { fails: true });
    expect((await putMember('dun1')).status).toBe(201);
    const target = Math.max(included, await people());
    await host.eventually(quantities, (q) => q.now === target);
    expect((await subscription()).status).toBe('past_due');
    const invoices = await host.services.payments.listInvoices(customerId, 10);
    const open = invoices.find((i) => i.status === 'open' && i.billingReason === 'subscription_update');
    expect(open).toBeDefined();
    expect(await host.services.directory.isMember(orgId, 'dun1')).toBe(true);
    const status = await host.eventually(
      async () =>
        ((await host.call('GET', '/api/billing/summary', { token: owner })).body as { status: string })
          .status,
      (value) => value !== 'active',
    );
    expect(['retrying', 'grace', 'past_due']).toContain(status);
    await sandboxCall(`/_sandbox/customers/${customerId}/payment_method`, { fails: false });
    await sandboxCall(`/_sandbox/invoices/${open?.id ?? ''}/retry`);
    await host.eventually(
      async () => (await subscription()).status,
      (value) => value === 'active',
    );
    expect((await quantities()).now).toBe(target);
  });

  it('the owner cap refuses a new person with seat_cap_reached and writes nothing', async () => {
    const used = await people();
    const member = await token({ sub: 'r1', org: orgId });
    expect(
      (await host.call('PUT', '/api/billing/seats', { token: member, body: { maxSeats: 1 } })).status,
    ).toBe(403);
    const cap = await host.call('PUT', '/api/billing/seats', { token: owner, body: { maxSeats: used } });
    expect(cap.status, cap.text).toBe(200);
    const refused = await putMember('over-cap');
    expect(refused.status, refused.text).toBe(402);
    expect(refused.body).toMatchObject({ code: 'seat_cap_reached', limit: used, used });
    expect(await people()).toBe(used);
    expect(
      (await host.call('PUT', '/api/billing/seats', { token: owner, body: { maxSeats: null } })).status,
    ).toBe(200);
    expect((await putMember('over-cap')).status).toBe(201);
  });
});
