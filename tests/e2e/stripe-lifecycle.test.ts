import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { expectProblem, startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * The whole subscription story over HTTP: local host, Stripe sandbox (webhooks signed with Stripe's
 * scheme, delivered to our endpoint, through the queue to the processor), Azurite.
 */
describe('subscription lifecycle end to end', () => {
  let host: TestHost;
  let owner: string;
  let member: string;

  const summary = async () => {
    const response = await host.call('GET', '/api/billing/summary', { token: owner });
    expect(response.status, response.text).toBe(200);
    return response.body as {
      plan: { name: string; interval: string | null };
      status: string;
      accessLevel: string;
      limits: Record<string, number | null>;
      cancelAtPeriodEnd: boolean;
      currentPeriodEnd: string | null;
      scheduledChange: { plan: string; effectiveAt: string } | null;
      allocations: { workflows: { used: number } };
    };
  };
  const post = (path: string, body?: unknown, as = owner) =>
    host.call('POST', path, { token: as, ...(body === undefined ? {} : { body }) });
  const sandboxCall = (path: string, body: unknown = {}) => host.sandboxOk('POST', path, body);
  const customerId = async () => {
    const id = await host.services.customers.customerOf('u-life');
    if (!id) throw new Error('no customer yet');
    return id;
  };
  const advanceTo = async (iso: string) => {
    await sandboxCall('/_sandbox/clock/advance', { to: iso });
    await host.settle();
  };
  const openInvoice = async () => {
    const invoices = (await host.call('GET', '/api/billing/invoices', { token: owner })).body as {
      invoices: Array<{ id: string; status: string; attemptCount: number }>;
    };
    const open = invoices.invoices.find((i) => i.status === 'open');
    if (!open) throw new Error(`no open invoice: ${JSON.stringify(invoices)}`);
    return open;
  };
  beforeAll(async () => {
    host = await startTestHost();
    const service = await host.serviceToken();
    await host.call('PUT', '/api/directory/orgs/o-life', { token: service, body: { creatorId: 'u-life' } });
    await host.call('PUT', '/api/directory/orgs/o-life/members/u-life-member', { token: service });
    for (let i = 0; i < 3; i++) {
      await host.call('PUT', `/api/directory/workflows/life-${i}`, {
        token: service,
        body: { workspace: { orgId: 'o-life' }, nodeCount: 2 },
      });
    }
    owner = await token({ sub: 'u-life', org: 'o-life' });
    member = await token({ sub: 'u-life-member', org: 'o-life' });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('refuses checkout to a member, for enterprise and for free', async () => {
    expectProblem(
      await post('/api/billing/checkout', { plan: 'pro', interval: 'monthly' }, member),
      403,
      'billing_owner_only',
    );
    expectProblem(
      await post('/api/billing/checkout', { plan: 'enterprise', interval: 'monthly' }),
      400,
      'plan_not_self_serve',
    );
    expectProblem(
      await post('/api/billing/checkout', { plan: 'free', interval: 'monthly' }),
      400,
      'plan_not_purchasable',
    );
    expectProblem(
      await post('/api/billing/checkout', {
        plan: 'pro',
        interval: 'monthly',
        successUrl: 'https://evil.example',
      }),
      400,
      'invalid_body',
    );
  });

  it('checkout -> pay -> the summary shows the paid plan', async () => {
    const checkout = await post('/api/billing/checkout', { plan: 'pro', interval: 'monthly' });
    expect(checkout.status, checkout.text).toBe(201);
    const { url, sessionId } = checkout.body as { url: string; sessionId: string };
    expect(url).toContain(sessionId);
    await sandboxCall(`/checkout/${sessionId}/pay`);
    await host.settle();
    const after = await summary();
    expect(after).toMatchObject({
      plan: { name: 'pro', interval: 'monthly' },
      status: 'active',
      accessLevel: 'full',
    });
    expect(after.limits).toEqual(catalog.pro.limits);
    expectProblem(
      await post('/api/billing/checkout', { plan: 'team', interval: 'monthly' }),
      409,
      'subscription_exists',
    );
  });

  it('upgrade -> new limits at once', async () => {
    const response = await post('/api/billing/subscription/change', { plan: 'team', interval: 'monthly' });
    expect(response.status, response.text).toBe(200);
    expect((await summary()).limits.workflows).toBe(catalog.team.limits.workflows);
    await host.settle();
    expect((await summary()).plan.name).toBe('team');
  });

  it('downgrade -> scheduled, applied at renewal', async () => {
    const response = await post('/api/billing/subscription/change', { plan: 'pro', interval: 'monthly' });
    expect(response.status, response.text).toBe(202);
    const scheduled = await summary();
    expect(scheduled.plan.name).toBe('team');
    expect(scheduled.scheduledChange).toMatchObject({ plan: 'pro' });
    await host.settle();
    await advanceTo(new Date(Date.parse(scheduled.currentPeriodEnd ?? '') + 60_000).toISOString());
    const renewed = await summary();
    expect(renewed).toMatchObject({ plan: { name: 'pro' }, status: 'active', scheduledChange: null });
    expect(renewed.limits).toEqual(catalog.pro.limits);
  });

  it('failed payment -> retrying -> grace -> locked -> recovered', async () => {
    await sandboxCall(`/_sandbox/customers/${await customerId()}/payment_method`, { fails: true });
    const before = await summary();
    await advanceTo(new Date(Date.parse(before.currentPeriodEnd ?? '') + 60_000).toISOString());
    expect(await summary()).toMatchObject({ status: 'retrying', accessLevel: 'full' });

    const invoice = await openInvoice();
    await sandboxCall(`/_sandbox/invoices/${invoice.id}/retry`);
    await host.settle();
    expect(await summary()).toMatchObject({ status: 'grace', accessLevel: 'grace' });

    await sandboxCall(`/_sandbox/invoices/${invoice.id}/retry`);
    await sandboxCall(`/_sandbox/invoices/${invoice.id}/retry`);
    await host.settle();
    const locked = await summary();
    expect(locked).toMatchObject({ status: 'past_due', accessLevel: 'locked' });
    expect(locked.limits).toEqual(catalog.free.limits);

    await sandboxCall(`/_sandbox/customers/${await customerId()}/payment_method`, { fails: false });
    await sandboxCall(`/_sandbox/invoices/${invoice.id}/retry`);
    await host.settle();
    expect(await summary()).toMatchObject({ status: 'active', accessLevel: 'full', plan: { name: 'pro' } });
  });

  it('an upgrade whose payment is declined answers 402 and changes nothing', async () => {
    await sandboxCall(`/_sandbox/customers/${await customerId()}/payment_method`, { fails: true });
    expectProblem(
      await post('/api/billing/subscription/change', { plan: 'team', interval: 'yearly' }),
      402,
      'payment_declined',
    );
    await host.settle();
    expect(await summary()).toMatchObject({ plan: { name: 'pro', interval: 'monthly' }, status: 'active' });
    await sandboxCall(`/_sandbox/customers/${await customerId()}/payment_method`, { fails: false });
  });

  it('cancel -> access until the period ends -> free; resume undoes it; nothing is deleted', async () => {
    const cancelled = await post('/api/billing/subscription/cancel');
    expect(cancelled.status, cancelled.text).toBe(200);
    expect(await summary()).toMatchObject({ plan: { name: 'pro' }, cancelAtPeriodEnd: true });
    expect((await post('/api/billing/subscription/resume')).status).toBe(200);
    expect((await summary()).cancelAtPeriodEnd).toBe(false);
    expect((await post('/api/billing/subscription/cancel')).status).toBe(200);
    await host.settle();

    const end = (await summary()).currentPeriodEnd ?? '';
    await advanceTo(new Date(Date.parse(end) + 60_000).toISOString());
    const ended = await summary();
    expect(ended).toMatchObject({ plan: { name: 'free' }, status: 'canceled', accessLevel: 'free' });
    expect(ended.allocations.workflows.used).toBe(3);
    expectProblem(await post('/api/billing/subscription/cancel'), 409, 'no_subscription');
  });

  it('keeps the invoice history and an audit row for every change, each naming its cause', async () => {
    const invoices = (await host.call('GET', '/api/billing/invoices', { token: owner })).body as {
      invoices: Array<{ status: string; billingReason: string }>;
    };
    expect(invoices.invoices.length).toBeGreaterThanOrEqual(4);
    expect(invoices.invoices.map((i) => i.billingReason)).toContain('subscription_create');
    const audit = await host.services.tables.billing.list('u-life', { prefix: 'audit|' });
    expect(audit.length).toBeGreaterThanOrEqual(6);
    for (const row of audit) {
      expect(row.props.causeId).toEqual(expect.any(String));
      expect(String(row.props.changed)).not.toBe('');
    }
    expect((await host.call('GET', '/api/billing/invoices', { token: member })).status).toBe(403);
  });

  it('opens the billing portal for the owner only', async () => {
    const portal = await post('/api/billing/portal');
    expect(portal.status, portal.text).toBe(201);
    expect((portal.body as { url: string }).url).toMatch(/\/portal\//);
    expectProblem(await post('/api/billing/portal', undefined, member), 403, 'billing_owner_only');
  });
});
