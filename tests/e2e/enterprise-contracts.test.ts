import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { expectProblem, startTestHost, type TestHost, token } from '../support/harness.js';
import { manualClock } from '../support/memory.js';

/**
 * Enterprise contracts over HTTP: an operator activates one without checkout, the owner's checks and
 * summary follow it, it lapses into locks (never deletions) at `endsAt`, and a contract billed by Stripe
 * invoice issues one invoice per period in the sandbox whose payment drives access through the dunning
 * rules. The host's business clock and the sandbox's are moved together.
 */
describe('enterprise contracts end to end', () => {
  const clock = manualClock();
  let host: TestHost;
  let admin: string;
  let service: string;
  const DAY = 86_400_000;

  interface Summary {
    plan: { name: string; interval: string | null };
    status: string;
    accessLevel: string;
    contract: { id: string; billing: string; seats: number | null } | null;
    limits: Record<string, number | null>;
    flags: Record<string, boolean>;
    locked: { workflows: Array<{ id: string; limit: string }> };
    allocations: { workflows: { used: number } };
  }
  interface ContractBody {
    id: string;
    active: boolean;
    paymentStatus: string;
    invoices: Array<{ period: number; invoiceId: string; status: string; dueAt: string | null }>;
  }

  const summary = async (owner: string, org: string) => {
    const response = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: owner, org }),
    });
    expect(response.status, response.text).toBe(200);
    return response.body as Summary;
  };
  const putContract = (owner: string, body: unknown, as = admin) =>
    host.call('PUT', `/api/ops/owners/${owner}/contract`, { token: as, body });
  const getContract = async (owner: string) => {
    const response = await host.call('GET', `/api/ops/owners/${owner}/contract`, { token: admin });
    expect(response.status, response.text).toBe(200);
    return (response.body as { contract: ContractBody }).contract;
  };
  const workflow = (id: string, orgId: string) =>
    host.call('PUT', `/api/directory/workflows/${id}`, {
      token: service,
      body: { workspace: { orgId }, nodeCount: 2 },
    });
  /** Both clocks to `at`: the sandbox acts on what it crosses (due dates), then its events are applied. */
  const moveTo = async (at: Date) => {
    await host.sandboxOk('POST', '/_sandbox/clock/advance', { to: at.toISOString() });
    clock.set(at.toISOString());
    await host.settle();
  };
  const now = () => clock.now();
  const manual = (over: Record<string, unknown> = {}) => ({
    plan: 'enterprise',
    limits: { workflows_per_org: 20 },
    flags: { white_label: true },
    seats: 25,
    startsAt: new Date(now().getTime() - 3_600_000).toISOString(),
    endsAt: new Date(now().getTime() + 30 * DAY).toISOString(),
    billing: 'manual',
    reason: 'Order form ACME-114',
    ...over,
  });

  beforeAll(async () => {
    host = await startTestHost({ clock });
    clock.set(String((await host.sandboxOk('GET', '/_sandbox/clock')).now));
    admin = await token({ sub: 'ops-ann', roles: ['admin'] });
    service = await host.serviceToken();
  });
  afterAll(async () => {
    await host?.close();
  });

  it('refuses user and service tokens (403) and bad input (400), writing nothing', async () => {
    await host.call('PUT', '/api/directory/orgs/o-bad', { token: service, body: { creatorId: 'u-bad' } });
    const user = await token({ sub: 'u-bad', org: 'o-bad' });
    expectProblem(await putContract('u-bad', manual(), user), 403, 'admin_role_required');
    expectProblem(await putContract('u-bad', manual(), service), 403, 'admin_role_required');
    expectProblem(
      await host.call('GET', '/api/ops/owners/u-bad/contract', { token: service }),
      403,
      'admin_role_required',
    );
    expectProblem(
      await putContract('u-bad', manual({ endsAt: new Date(now().getTime() - 2 * DAY).toISOString() })),
      400,
      'invalid_body',
    );
    expectProblem(await putContract('u-bad', manual({ billing: 'stripe_invoice' })), 400, 'invalid_body');
    expectProblem(await putContract('u-bad', manual({ reason: '' })), 400, 'invalid_body');
    expectProblem(await putContract('u-bad', manual({ reason: 'x'.repeat(501) })), 400, 'invalid_body');
    expectProblem(await putContract('u-bad', manual({ plan: 'pro' })), 400, 'invalid_body');
    expectProblem(await putContract('u-bad', manual({ limits: { seats: 4 } })), 400, 'invalid_body');
    expectProblem(
      await host.call('DELETE', '/api/ops/owners/u-bad/contract', { token: admin, body: {} }),
      400,
      'invalid_body',
    );
    expectProblem(
      await host.call('GET', '/api/ops/owners/u-bad/contract', { token: admin }),
      404,
      'contract_not_found',
    );
    expect((await summary('u-bad', 'o-bad')).plan.name).toBe('free');
    const audit = await host.services.tables.billing.list('u-bad', { prefix: 'audit|' });
    expect(audit).toEqual([]);
  });

  it('activates enterprise without checkout, then lapses into locks at endsAt (items kept)', async () => {
    await host.call('PUT', '/api/directory/orgs/o-ent', { token: service, body: { creatorId: 'u-ent' } });
    const perOrg = catalog.free.limits.workflows_per_org ?? 0;
    for (let i = 0; i < perOrg; i++) expect((await workflow(`ent-${i}`, 'o-ent')).status).toBe(201);
    expectProblem(await workflow(`ent-${perOrg}`, 'o-ent'), 402, 'limit_exceeded');

    const body = manual();
    const created = await putContract('u-ent', body);
    expect(created.status, created.text).toBe(201);
    const { contract } = created.body as { contract: ContractBody };
    expect(contract).toMatchObject({ active: true, paymentStatus: 'active', invoices: [] });
    // The same PUT again changes nothing.
    const again = await putContract('u-ent', body);
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ changed: false, contract: { id: contract.id } });

    // A self-serve checkout now would bill for nothing: refused while the contract governs.
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: await token({ sub: 'u-ent', org: 'o-ent' }),
      body: { plan: 'pro', interval: 'monthly' },
    });
    expectProblem(checkout, 409, 'contract_active');

    const on = await summary('u-ent', 'o-ent');
    expect(on).toMatchObject({
      plan: { name: 'enterprise', interval: null },
      status: 'active',
      accessLevel: 'full',
      contract: { id: contract.id, billing: 'manual', seats: 25 },
    });
    expect(on.limits).toMatchObject({ workflows_per_org: 20, seats: 25, executions: null });
    expect(on.flags.white_label).toBe(true);
    const check = await host.call('POST', '/api/entitlements/check', {
      token: service,
      body: { subject: { orgId: 'o-ent' }, feature: 'workflows_per_org', explain: true },
    });
    expect(check.status, check.text).toBe(200);
    expect(check.body).toMatchObject({ allowed: true, plan: 'enterprise', limit: 20 });
    const steps = (check.body as { explain: { steps: Array<Record<string, unknown>> } }).explain.steps;
    expect(steps.find((s) => s.step === 'limit')).toMatchObject({
      source: 'contract',
      contract: { id: contract.id, limit: 20 },
    });
    for (let i = perOrg; i < perOrg + 3; i++) expect((await workflow(`ent-${i}`, 'o-ent')).status).toBe(201);

    // endsAt passes: the free plan again; what is over it is locked, and still there.
    clock.set(new Date(Date.parse(body.endsAt) + 60_000).toISOString());
    const lapsed = await summary('u-ent', 'o-ent');
    expect(lapsed).toMatchObject({
      plan: { name: 'free' },
      contract: null,
      allocations: { workflows: { used: perOrg + 3 } },
    });
    expect(lapsed.locked.workflows.map((w) => [w.id, w.limit])).toEqual(
      [perOrg, perOrg + 1, perOrg + 2].map((i) => [`ent-${i}`, 'workflows_per_org']),
    );
    // Kept, not deleted: the item rows are there, and an update of a locked one is accepted.
    expect((await workflow(`ent-${perOrg + 2}`, 'o-ent')).status).toBe(200);
    expect(await getContract('u-ent')).toMatchObject({ id: contract.id, active: false });
    const audit = await host.services.tables.billing.list('u-ent', { prefix: 'audit|' });
    expect(audit.filter((row) => row.props.kind === 'contract_set').map((row) => row.props)).toEqual([
      expect.objectContaining({
        actorKind: 'admin',
        actor: 'ops-ann',
        causeKind: 'admin',
        reason: body.reason,
        revertible: 'contract',
      }),
    ]);
    clock.set(String((await host.sandboxOk('GET', '/_sandbox/clock')).now));
  });

  it('over a live self-serve subscription; ending it falls back to that plan', async () => {
    await host.call('PUT', '/api/directory/orgs/o-sub', { token: service, body: { creatorId: 'u-sub' } });
    const owner = await token({ sub: 'u-sub', org: 'o-sub' });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await host.sandboxOk('POST', `/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`, {});
    await host.settle();
    expect((await summary('u-sub', 'o-sub')).plan.name).toBe('pro');
    expect((await putContract('u-sub', manual())).status).toBe(201);
    expect(await summary('u-sub', 'o-sub')).toMatchObject({
      plan: { name: 'enterprise' },
      contract: { billing: 'manual' },
    });
    const ended = await host.call('DELETE', '/api/ops/owners/u-sub/contract', {
      token: admin,
      body: { reason: 'Contract terminated' },
    });
    expect(ended.status, ended.text).toBe(204);
    const after = await summary('u-sub', 'o-sub');
    expect(after).toMatchObject({ plan: { name: 'pro' }, status: 'active', contract: null });
    expect(after.limits).toEqual(catalog.pro.limits);
    // Ending twice is not an error.
    const twice = await host.call('DELETE', '/api/ops/owners/u-sub/contract', {
      token: admin,
      body: { reason: 'Contract terminated' },
    });
    expect(twice.status).toBe(204);
  });

  it('stripe_invoice: one send_invoice invoice per period in the sandbox, and dunning on it', async () => {
    await host.call('PUT', '/api/directory/orgs/o-inv', { token: service, body: { creatorId: 'u-inv' } });
    const start = now();
    const body = manual({
      startsAt: start.toISOString(),
      endsAt: new Date(start.getTime() + 90 * DAY).toISOString(),
      billing: 'stripe_invoice',
      invoicing: { amount: 250_000, currency: 'USD', interval: 'month', daysUntilDue: 30, graceDays: 7 },
    });
    const created = await putContract('u-inv', body);
    expect(created.status, created.text).toBe(201);
    const { contract } = created.body as { contract: ContractBody };
    expect(contract.invoices).toMatchObject([{ period: 0, status: 'open' }]);
    const first = contract.invoices[0]?.invoiceId ?? '';
    const stripeInvoice = await host.services.payments.getInvoice(first);
    expect(stripeInvoice).toMatchObject({
      status: 'open',
      collectionMethod: 'send_invoice',
      amountDue: 250_000,
      currency: 'usd',
      metadata: { billing_owner: 'u-inv', contract_id: contract.id, contract_period: '0' },
    });
    expect(stripeInvoice.dueDate?.getTime()).toBe(Math.floor(start.getTime() / 1000) * 1000 + 30 * DAY);
    const customerId = (await host.services.customers.customerOf('u-inv')) ?? '';
    const stripeInvoices = async () => (await host.services.payments.listInvoices(customerId, 100)).length;

    // The timer, twice: nothing more for this period.
    expect((await host.services.contractInvoicing.sweep('run-1')).issued).toBe(0);
    expect((await host.services.contractInvoicing.sweep('run-2')).issued).toBe(0);
    expect(await stripeInvoices()).toBe(1);
    await moveTo(new Date(start.getTime() + 29 * DAY));
    expect(await summary('u-inv', 'o-inv')).toMatchObject({
      plan: { name: 'enterprise' },
      accessLevel: 'full',
    });

    // The second period begins: the timer issues its invoice, once. The first is past due: grace.
    await moveTo(new Date(start.getTime() + 31 * DAY + 3_600_000));
    expect((await host.services.contractInvoicing.sweep('run-3')).issued).toBe(1);
    expect((await host.services.contractInvoicing.sweep('run-4')).issued).toBe(0);
    expect(await stripeInvoices()).toBe(2);
    expect(await summary('u-inv', 'o-inv')).toMatchObject({
      status: 'grace',
      accessLevel: 'grace',
      plan: { name: 'enterprise' },
    });
    expect((await host.sandboxOk('GET', '/_sandbox/events')).data).toEqual(
      expect.arrayContaining([expect.objectContaining({ type: 'invoice.overdue' })]),
    );

    // graceDays later, still unpaid: locked, on the free plan's limits.
    await moveTo(new Date(start.getTime() + 38 * DAY));
    const locked = await summary('u-inv', 'o-inv');
    expect(locked).toMatchObject({ status: 'past_due', accessLevel: 'locked' });
    expect(locked.limits).toEqual(catalog.free.limits);

    // Paying restores it.
    await host.sandboxOk('POST', `/_sandbox/invoices/${first}/pay`, {});
    await host.settle();
    expect(await summary('u-inv', 'o-inv')).toMatchObject({ status: 'active', accessLevel: 'full' });
    expect((await getContract('u-inv')).invoices.map((i) => [i.period, i.status])).toEqual([
      [0, 'paid'],
      [1, 'open'],
    ]);

    // Marked uncollectible: locked at once; paid after all: restored.
    const second = (await getContract('u-inv')).invoices[1]?.invoiceId ?? '';
    await host.sandboxOk('POST', `/_sandbox/invoices/${second}/uncollectible`, {});
    await host.settle();
    expect(await summary('u-inv', 'o-inv')).toMatchObject({ status: 'unpaid', accessLevel: 'locked' });
    await host.sandboxOk('POST', `/_sandbox/invoices/${second}/pay`, {});
    await host.settle();
    expect(await summary('u-inv', 'o-inv')).toMatchObject({ status: 'active', accessLevel: 'full' });
    // Every contract invoice event went through the contract path, once, and none was poisoned.
    const applied = await host.services.tables.billing.list('u-inv', { prefix: 'audit|' });
    // Paid, marked uncollectible, paid: three changes (an overdue invoice is unchanged in Stripe; time decides grace).
    expect(applied.filter((row) => row.props.kind === 'contract_payment_changed')).toHaveLength(3);
    expect((await host.services.poison.list({ limit: 10 })).items).toEqual([]);
  });
});
