import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { type ApiResponse, startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * The change preview over HTTP against the Stripe sandbox and Azurite: each preview is compared, field
 * by field, with what the real change then does through the real endpoints (the invoice the sandbox
 * charges, the summary, and the locks once the change has taken effect), and a preview writes nothing.
 */

interface LockedItem {
  readonly id: string;
  readonly workspace: unknown;
  readonly createdAt: string;
  readonly limit: string;
}
interface LockReport {
  readonly workflows: readonly LockedItem[];
  readonly credentials: readonly LockedItem[];
}
interface Terms {
  readonly plan: string;
  readonly interval: string | null;
  readonly status: string;
  readonly accessLevel: string;
  readonly limits: Record<string, number | null>;
  readonly flags: Record<string, boolean>;
  readonly seats: number | null;
}
interface Preview {
  readonly version: number;
  readonly kind: string;
  readonly effectiveAt: string;
  readonly current: Terms;
  readonly after: Terms;
  readonly dueNow: { amount: number; currency: string; lines: Array<{ amount: number }> };
  readonly locked: LockReport;
  readonly chooseLocks: { method: string; href: string };
}
interface Summary {
  readonly version: number;
  readonly plan: { name: string; interval: string | null };
  readonly status: string;
  readonly accessLevel: string;
  readonly limits: Record<string, number | null>;
  readonly flags: Record<string, boolean>;
  readonly currentPeriodEnd: string | null;
  readonly seatsPurchased: number | null;
  readonly seats: { billed: number | null };
  readonly scheduledChange: { plan: string; effectiveAt: string } | null;
  readonly locked: LockReport;
}

const ownerId = 'u-prev';
const orgId = 'o-prev';
/** Pro allows 50 workflows per organization and 100 credentials: a downgrade from Team locks the rest. */
const WORKFLOWS = (catalog.pro.limits.workflows_per_org ?? 0) + 3;
const CREDENTIALS = (catalog.pro.limits.credentials ?? 0) + 2;

/** The API's view of a locked item (GET /billing/locks may carry more fields of the item row). */
const shown = (report: LockReport): LockReport => ({
  workflows: report.workflows.map(({ id, workspace, createdAt, limit }) => ({
    id,
    workspace,
    createdAt,
    limit,
  })),
  credentials: report.credentials.map(({ id, workspace, createdAt, limit }) => ({
    id,
    workspace,
    createdAt,
    limit,
  })),
});

describe('change preview end to end: the preview is what the change does', () => {
  let host: TestHost;
  let owner: string;
  let member: string;

  const expectProblem = (response: ApiResponse, status: number, code: string) => {
    expect(response.status, response.text).toBe(status);
    expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(response.body).toMatchObject({ code });
  };
  const summary = async (): Promise<Summary> => {
    const response = await host.call('GET', '/api/billing/summary', { token: owner });
    expect(response.status, response.text).toBe(200);
    return response.body as Summary;
  };
  const preview = async (body: unknown): Promise<Preview> => {
    const response = await host.call('POST', '/api/billing/subscription/preview', { token: owner, body });
    expect(response.status, response.text).toBe(200);
    return response.body as Preview;
  };
  const locks = async (): Promise<LockReport> => {
    const response = await host.call('GET', '/api/billing/locks', { token: owner });
    expect(response.status, response.text).toBe(200);
    return shown((response.body as { locked: LockReport }).locked);
  };
  const customerId = async () => {
    const id = await host.services.customers.customerOf(ownerId);
    if (!id) throw new Error('no customer yet');
    return id;
  };
  const stripeSubscriptions = async () => host.services.payments.listSubscriptions(await customerId());
  const advanceTo = async (iso: string) => {
    await host.sandboxOk('POST', '/_sandbox/clock/advance', { to: iso });
    await host.settle();
  };

  /** Previews `body` and proves nothing was written: our version, Stripe's subscription, its events. */
  const previewWritingNothing = async (body: unknown): Promise<Preview> => {
    await host.settle();
    const [before, subsBefore] = await Promise.all([summary(), stripeSubscriptions()]);
    const eventsBefore = host.sandbox?.events().length;
    const answer = await preview(body);
    await host.settle();
    expect(answer.version).toBe(before.version);
    expect((await summary()).version).toBe(before.version);
    expect(await stripeSubscriptions()).toEqual(subsBefore);
    expect(host.sandbox?.events().length).toBe(eventsBefore);
    // What is in force now is what the summary says.
    expect(answer.current).toMatchObject({
      plan: before.plan.name,
      interval: before.plan.interval,
      status: before.status,
      accessLevel: before.accessLevel,
      limits: before.limits,
      flags: before.flags,
    });
    expect(answer.chooseLocks).toEqual({ method: 'PUT', href: '/api/billing/locks' });
    return answer;
  };

  /** A few at a time: the platform pushes its directory concurrently too. */
  const pushAll = async (paths: readonly string[], body: unknown, service: string) => {
    for (let i = 0; i < paths.length; i += 8) {
      const answers = await Promise.all(
        paths.slice(i, i + 8).map((path) => host.call('PUT', path, { token: service, body })),
      );
      for (const answer of answers) expect(answer.status, answer.text).toBe(201);
    }
  };

  beforeAll(async () => {
    host = await startTestHost();
    const service = await host.serviceToken();
    await host.call('PUT', `/api/directory/orgs/${orgId}`, { token: service, body: { creatorId: ownerId } });
    await host.call('PUT', `/api/directory/orgs/${orgId}/members/u-prev-member`, { token: service });
    owner = await token({ sub: ownerId, org: orgId });
    member = await token({ sub: 'u-prev-member', org: orgId });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await host.sandboxOk('POST', `/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    await host.settle();
  }, 60_000);
  afterAll(async () => {
    await host?.close();
  });

  it('refuses bad input with 400 and anyone but the billing owner with 403', async () => {
    const post = (body: unknown, as = owner) =>
      host.call('POST', '/api/billing/subscription/preview', { token: as, body });
    expectProblem(await post({ plan: 'team', interval: 'monthly' }, member), 403, 'billing_owner_only');
    expectProblem(await post({ plan: 'team' }), 400, 'invalid_body');
    expectProblem(await post({ cancel: false }), 400, 'invalid_body');
    expectProblem(await post({ cancel: true, plan: 'pro', interval: 'monthly' }), 400, 'invalid_body');
    expectProblem(await post({ plan: 'team', interval: 'weekly' }), 400, 'invalid_body');
    expectProblem(await post('{"plan":'), 400, 'malformed_json');
    expectProblem(await post({ plan: 'free', interval: 'monthly' }), 400, 'plan_not_purchasable');
    expectProblem(await post({ plan: 'enterprise', interval: 'monthly' }), 400, 'plan_not_self_serve');
    expectProblem(
      await host.call('POST', '/api/billing/subscription/preview', {
        token: owner,
        headers: { 'content-type': 'application/json' },
      }),
      400,
      'body_required',
    );
  });

  it('answers 409 for the current plan (as the change does) and for an owner without a subscription', async () => {
    const same = { plan: 'pro', interval: 'monthly' };
    expectProblem(
      await host.call('POST', '/api/billing/subscription/preview', { token: owner, body: same }),
      409,
      'no_change',
    );
    expectProblem(
      await host.call('POST', '/api/billing/subscription/change', { token: owner, body: same }),
      409,
      'no_change',
    );
    const nobody = await token({ sub: 'u-prev-free' });
    for (const body of [{ plan: 'team', interval: 'monthly' }, { cancel: true }]) {
      expectProblem(
        await host.call('POST', '/api/billing/subscription/preview', { token: nobody, body }),
        409,
        'no_subscription',
      );
    }
  });

  it('(a) upgrade: due now is the invoice the sandbox charges; limits, flags and seats are the summary after', async () => {
    // Ten days into the period, so the proration is a real fraction.
    const { now } = (await host.sandboxOk('GET', '/_sandbox/clock')) as { now: string };
    await advanceTo(new Date(Date.parse(now) + 10 * 86_400_000).toISOString());
    const answer = await previewWritingNothing({ plan: 'team', interval: 'monthly' });
    expect(answer.kind).toBe('upgrade');
    expect(Math.abs(Date.parse(answer.effectiveAt) - Date.now())).toBeLessThan(60_000);
    // Team bills max(included seats, people): the owner and one member are fewer than the 3 included.
    expect(answer.after.seats).toBe(Math.max(catalog.team.limits.seats ?? 1, 2));
    expect(answer.dueNow.amount).toBeGreaterThan(0);
    expect(answer.dueNow.lines.reduce((sum, line) => sum + line.amount, 0)).toBe(answer.dueNow.amount);
    expect(answer.locked).toEqual({ workflows: [], credentials: [] });

    const changed = await host.call('POST', '/api/billing/subscription/change', {
      token: owner,
      body: { plan: 'team', interval: 'monthly' },
    });
    expect(changed.status, changed.text).toBe(200);
    await host.settle();
    const invoices = (await host.call('GET', '/api/billing/invoices', { token: owner })).body as {
      invoices: Array<{ billingReason: string; amountPaid: number; currency: string; status: string }>;
    };
    const charged = invoices.invoices.find((invoice) => invoice.billingReason === 'subscription_update');
    expect(charged).toMatchObject({
      status: 'paid',
      amountPaid: answer.dueNow.amount,
      currency: answer.dueNow.currency,
    });
    const after = await summary();
    expect({
      plan: after.plan.name,
      interval: after.plan.interval,
      status: after.status,
      accessLevel: after.accessLevel,
      limits: after.limits,
      flags: after.flags,
      seats: after.seats.billed,
    }).toEqual(answer.after);
    expect(after.seatsPurchased).toBe(answer.after.seats);
    expect(after.locked).toEqual(answer.locked);
  });

  it('(b) downgrade with locks: exactly the named resources lock when it takes effect, keep picks honoured', async () => {
    const service = await host.serviceToken();
    const workflows = Array.from({ length: WORKFLOWS }, (_, i) => `pv-wf-${String(i).padStart(3, '0')}`);
    const credentials = Array.from({ length: CREDENTIALS }, (_, i) => `pv-cr-${String(i).padStart(3, '0')}`);
    await pushAll(
      workflows.map((id) => `/api/directory/workflows/${id}`),
      { workspace: { orgId }, nodeCount: 2 },
      service,
    );
    await pushAll(
      credentials.map((id) => `/api/directory/credentials/${id}`),
      { workspace: { orgId } },
      service,
    );
    // The owner keeps the two newest: without the picks they would be among the locked.
    const picks = { workflows: workflows.slice(-2), credentials: credentials.slice(-1) };
    const put = await host.call('PUT', '/api/billing/locks', { token: owner, body: picks });
    expect(put.status, put.text).toBe(200);
    expect(await locks()).toEqual({ workflows: [], credentials: [] });

    const before = await summary();
    const answer = await previewWritingNothing({ plan: 'pro', interval: 'monthly' });
    expect(answer).toMatchObject({
      kind: 'downgrade',
      effectiveAt: before.currentPeriodEnd,
      dueNow: { amount: 0, lines: [] },
      after: { plan: 'pro', interval: 'monthly', seats: null, limits: catalog.pro.limits },
    });
    expect(answer.current.seats).toBe(before.seats.billed);
    expect(answer.locked.workflows.map((w) => w.limit)).toEqual([
      'workflows_per_org',
      'workflows_per_org',
      'workflows_per_org',
    ]);
    expect(answer.locked.credentials).toHaveLength(2);
    const lockedIds = [...answer.locked.workflows, ...answer.locked.credentials].map((item) => item.id);
    for (const kept of [...picks.workflows, ...picks.credentials]) expect(lockedIds).not.toContain(kept);

    const changed = await host.call('POST', '/api/billing/subscription/change', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(changed.status, changed.text).toBe(202);
    expect(changed.body).toMatchObject({ kind: 'downgrade_scheduled', effectiveAt: answer.effectiveAt });
    await host.settle();
    const scheduled = await summary();
    expect(scheduled.scheduledChange).toMatchObject({ plan: 'pro', effectiveAt: answer.effectiveAt });
    expect(await locks()).toEqual({ workflows: [], credentials: [] });

    await advanceTo(new Date(Date.parse(answer.effectiveAt) + 60_000).toISOString());
    const after = await summary();
    expect({
      plan: after.plan.name,
      interval: after.plan.interval,
      status: after.status,
      accessLevel: after.accessLevel,
      limits: after.limits,
      flags: after.flags,
      seats: after.seats.billed,
    }).toEqual(answer.after);
    expect(await locks()).toEqual(answer.locked);
  });

  it('(c) cancel: effective at the period end, then the free plan, the named resources locked', async () => {
    const before = await summary();
    const answer = await previewWritingNothing({ cancel: true });
    expect(answer).toMatchObject({
      kind: 'cancel',
      effectiveAt: before.currentPeriodEnd,
      dueNow: { amount: 0, lines: [] },
      after: {
        plan: 'free',
        interval: null,
        status: 'canceled',
        accessLevel: 'free',
        limits: catalog.free.limits,
        flags: catalog.free.flags,
        seats: null,
      },
    });
    expect(answer.locked.workflows.length).toBe(WORKFLOWS - (catalog.free.limits.workflows_per_org ?? 0));
    expect(answer.locked.credentials.length).toBe(CREDENTIALS - (catalog.free.limits.credentials ?? 0));
    const lockedIds = answer.locked.workflows.map((item) => item.id);
    expect(lockedIds).not.toContain(`pv-wf-${String(WORKFLOWS - 1).padStart(3, '0')}`);

    const cancelled = await host.call('POST', '/api/billing/subscription/cancel', { token: owner });
    expect(cancelled.status, cancelled.text).toBe(200);
    await host.settle();
    expect((await summary()).plan.name).toBe('pro');

    await advanceTo(new Date(Date.parse(answer.effectiveAt) + 60_000).toISOString());
    const after = await summary();
    expect({
      plan: after.plan.name,
      interval: after.plan.interval,
      status: after.status,
      accessLevel: after.accessLevel,
      limits: after.limits,
      flags: after.flags,
      seats: after.seats.billed,
    }).toEqual(answer.after);
    expect(await locks()).toEqual(answer.locked);
  });
});
