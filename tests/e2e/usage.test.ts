import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CREDIT_PACKS, catalog } from '../../src/billing/catalog.js';
import type { Clock } from '../../src/billing/clock.js';
import { SUBSCRIPTION_ROW } from '../../src/billing/owner/keys.js';
import { usageRowKey } from '../../src/billing/usage.js';
import { expectProblem, startTestHost, type TestHost, token } from '../support/harness.js';
import { givenOwnerRows } from '../support/memory.js';

const freeExecutions = catalog.free.limits.executions ?? 0;

/** A clock the test moves, shared by the host (periods, rollover) and nothing else. */
function movableClock(start: string): Clock & { set(iso: string): void } {
  let now = new Date(start);
  return { now: () => new Date(now), set: (iso) => (now = new Date(iso)) };
}

describe('usage metering over HTTP', () => {
  let host: TestHost;
  let service: string;
  const clock = movableClock('2026-11-20T12:00:00.000Z');

  const consume = (body: Record<string, unknown>) =>
    host.call('POST', '/api/usage/consume', { token: service, body });
  const refund = (body: Record<string, unknown>) =>
    host.call('POST', '/api/usage/refund', { token: service, body });
  beforeAll(async () => {
    host = await startTestHost({ clock });
    service = await host.serviceToken();
    await host.call('PUT', '/api/directory/orgs/o-use', { token: service, body: { creatorId: 'u-use' } });
    await host.call('PUT', '/api/directory/workflows/wf-use', {
      token: service,
      body: { workspace: { orgId: 'o-use' }, nodeCount: 3 },
    });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('consumes once per idempotency key; a replay answers the original answer and counts nothing', async () => {
    const first = await consume({
      subject: { workflowId: 'wf-use' },
      meter: 'executions',
      quantity: 3,
      idempotencyKey: 'run-1',
    });
    expect(first.status, first.text).toBe(200);
    expect(first.body).toMatchObject({
      kind: 'consumed',
      replayed: false,
      used: 3,
      allowance: freeExecutions,
    });
    const replay = await consume({
      subject: { workflowId: 'wf-use' },
      meter: 'executions',
      quantity: 3,
      idempotencyKey: 'run-1',
    });
    expect(replay.body).toMatchObject({ kind: 'consumed', replayed: true, used: 3 });
    expectProblem(
      await consume({
        subject: { workflowId: 'wf-use' },
        meter: 'executions',
        quantity: 4,
        idempotencyKey: 'run-1',
      }),
      409,
      'idempotency_key_reused',
    );
    const summary = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-use', org: 'o-use' }),
    });
    expect(summary.body).toMatchObject({
      usage: {
        executions: { used: 3, allowance: freeExecutions, remaining: freeExecutions - 3, creditsUsed: 0 },
      },
      credits: { balance: 0 },
    });
  });

  it('refunds a failed run exactly once', async () => {
    const refunded = await refund({ subject: { workflowId: 'wf-use' }, idempotencyKey: 'run-1' });
    expect(refunded.status, refunded.text).toBe(200);
    expect(refunded.body).toMatchObject({ kind: 'refunded', used: 0 });
    expect((await refund({ subject: { workflowId: 'wf-use' }, idempotencyKey: 'run-1' })).body).toMatchObject(
      {
        kind: 'already_refunded',
      },
    );
    expectProblem(
      await refund({ subject: { workflowId: 'wf-use' }, idempotencyKey: 'never-ran' }),
      404,
      'consumption_not_found',
    );
  });

  it('answers 402 with what is left when the allowance runs out, consuming nothing', async () => {
    const period = (await host.services.entitlements.capabilities('u-use')).period;
    await givenOwnerRows(host.services, 'u-use', {
      [usageRowKey('executions', period)]: {
        used: freeExecutions - 2,
      },
    });
    const denied = await consume({
      subject: { orgId: 'o-use' },
      meter: 'executions',
      quantity: 5,
      idempotencyKey: 'run-big',
    });
    expectProblem(denied, 402, 'limit_exceeded');
    expect(denied.headers.get('content-type')).toMatch(/problem\+json/);
    expect(denied.body).toMatchObject({ remaining: 2, shortfall: 3, used: freeExecutions - 2 });
    const check = await host.call('POST', '/api/entitlements/check', {
      token: service,
      body: { subject: { orgId: 'o-use' }, feature: 'executions', quantity: 2 },
    });
    expect(check.body).toMatchObject({ allowed: true, remaining: 2 });
  });

  it('buys a credit pack through Stripe, granted once, and consumption draws on it after the allowance', async () => {
    const pack = CREDIT_PACKS[0];
    if (!pack) throw new Error('no credit packs');
    const owner = await token({ sub: 'u-use', org: 'o-use' });
    const checkout = await host.call('POST', '/api/billing/credits/checkout', {
      token: owner,
      body: { pack: pack.id },
    });
    expect(checkout.status, checkout.text).toBe(201);
    const { sessionId } = checkout.body as { sessionId: string };
    const paid = await fetch(`${host.sandbox?.url}/checkout/${sessionId}/pay`, {
      method: 'POST',
      headers: { accept: 'application/json' },
    });
    expect(paid.ok).toBe(true);
    await host.settle();
    // Stripe delivers the completion again: still one grant.
    const completed = host.sandbox?.events().filter((e) => e.type === 'checkout.session.completed') ?? [];
    expect(completed.length).toBe(1);
    await host.services.events.process({
      v: 2,
      eventId: completed[0]?.id ?? '',
      type: 'checkout.session.completed',
      objectId: sessionId,
      customerId: (await host.services.customers.customerOf('u-use')) ?? '',
      attempt: 0,
    });
    const credits = await host.call('GET', '/api/billing/credits', { token: owner });
    expect(credits.body).toMatchObject({ balance: pack.credits });

    const drawn = await consume({
      subject: { orgId: 'o-use' },
      meter: 'executions',
      quantity: 5,
      idempotencyKey: 'run-big-2',
    });
    expect(drawn.status, drawn.text).toBe(200);
    expect(drawn.body).toMatchObject({ fromAllowance: 2, fromCredits: 3, creditBalance: pack.credits - 3 });
    const ledger = (await host.call('GET', '/api/billing/credits', { token: owner })).body as {
      ledger: Array<{ kind: string; credits: number }>;
    };
    expect(ledger.ledger.map((e) => e.credits)).toEqual([-3, pack.credits]);
    expectProblem(
      await host.call('POST', '/api/billing/credits/checkout', {
        token: owner,
        body: { pack: 'credits_infinite' },
      }),
      400,
      'credit_pack_unknown',
    );
  });

  it('starts a new period at zero, and the closed one appears in the history before and after rollover', async () => {
    clock.set('2026-12-03T00:00:00.000Z');
    const fresh = await consume({
      subject: { orgId: 'o-use' },
      meter: 'executions',
      quantity: 1,
      idempotencyKey: 'run-dec',
    });
    expect(fresh.body).toMatchObject({ used: 1, periodKey: '2026-12' });
    const owner = await token({ sub: 'u-use', org: 'o-use' });
    const history = async () =>
      (
        (await host.call('GET', '/api/billing/usage?from=2026-11-01&to=2027-01-01', { token: owner }))
          .body as {
          periods: Array<{ periodKey: string; used: number; status: string }>;
        }
      ).periods.map((p) => [p.periodKey, p.used, p.status]);
    expect(await history()).toEqual([
      ['2026-11', freeExecutions + 3, 'ended'],
      ['2026-12', 1, 'open'],
    ]);
    const report = await host.services.rollover.run();
    expect(report.closed).toBeGreaterThanOrEqual(1);
    expect(await history()).toEqual([
      ['2026-11', freeExecutions + 3, 'closed'],
      ['2026-12', 1, 'open'],
    ]);
    expect((await host.services.rollover.run()).closed).toBe(0);
    expectProblem(
      await host.call('GET', '/api/billing/usage?from=2027-01-01&to=2026-01-01', { token: owner }),
      400,
      'invalid_range',
    );
    expectProblem(
      await host.call('GET', '/api/billing/usage?since=yesterday', { token: owner }),
      400,
      'invalid_query',
    );
  });

  it('locks what is over the limit after a downgrade, oldest kept or as the owner picked, never deleting', async () => {
    const perOrg = catalog.free.limits.workflows_per_org ?? 0;
    const proPerOrg = catalog.pro.limits.workflows_per_org ?? 0;
    expect(proPerOrg).toBeGreaterThan(perOrg);
    await host.call('PUT', '/api/directory/orgs/o-lock', { token: service, body: { creatorId: 'u-lock' } });
    const subscription = (status: 'active' | 'canceled') =>
      givenOwnerRows(host.services, 'u-lock', {
        [SUBSCRIPTION_ROW]: {
          plan: 'pro',
          interval: 'monthly',
          status,
          seats: 1,
          currentPeriodStart: '2026-12-01T00:00:00.000Z',
          currentPeriodEnd: '2027-01-01T00:00:00.000Z',
          cancelAtPeriodEnd: false,
          updatedAt: '2026-12-01T00:00:00.000Z',
        },
      });
    // Paid Pro, created perOrg + 2 workflows (more than free allows, so only on Pro), then the
    // subscription ended: back on free.
    await subscription('active');
    for (let i = 0; i < perOrg + 2; i++) {
      clock.set(new Date(Date.parse('2026-12-03T01:00:00.000Z') + i * 1000).toISOString());
      const created = await host.call('PUT', `/api/directory/workflows/lock-${i}`, {
        token: service,
        body: { workspace: { orgId: 'o-lock' }, nodeCount: 1 },
      });
      expect(created.status, created.text).toBe(201);
    }
    // While on Pro, a run of the newest workflow is consumed; its key keeps that answer after the lock.
    const before = await consume({
      subject: { workflowId: `lock-${perOrg + 1}` },
      meter: 'executions',
      quantity: 1,
      idempotencyKey: 'pre-lock',
    });
    expect(before.status, before.text).toBe(200);
    await givenOwnerRows(host.services, 'u-lock', {
      [SUBSCRIPTION_ROW]: {
        plan: 'pro',
        interval: 'monthly',
        status: 'canceled',
        seats: 1,
        currentPeriodStart: '2026-11-01T00:00:00.000Z',
        currentPeriodEnd: '2026-12-01T00:00:00.000Z',
        cancelAtPeriodEnd: false,
        updatedAt: '2026-12-01T00:00:00.000Z',
      },
    });
    const owner = await token({ sub: 'u-lock', org: 'o-lock' });
    const locked = async () =>
      (
        (await host.call('GET', '/api/billing/summary', { token: owner })).body as {
          locked: { workflows: Array<{ id: string }> };
        }
      ).locked.workflows.map((w) => w.id);
    expect(await locked()).toEqual([`lock-${perOrg}`, `lock-${perOrg + 1}`]);

    const run = await host.call('POST', '/api/entitlements/check', {
      token: service,
      body: { subject: { workflowId: `lock-${perOrg + 1}` }, feature: 'executions' },
    });
    expect(run.body).toMatchObject({ allowed: false, reason: 'resource_locked' });
    expectProblem(
      await consume({
        subject: { workflowId: `lock-${perOrg + 1}` },
        meter: 'executions',
        quantity: 1,
        idempotencyKey: 'locked-run',
      }),
      402,
      'resource_locked',
    );
    const replay = await consume({
      subject: { workflowId: `lock-${perOrg + 1}` },
      meter: 'executions',
      quantity: 1,
      idempotencyKey: 'pre-lock',
    });
    expect(replay.body).toMatchObject({ kind: 'consumed', replayed: true });

    const picked = await host.call('PUT', '/api/billing/locks', {
      token: owner,
      body: { workflows: [`lock-${perOrg + 1}`] },
    });
    expect(picked.status, picked.text).toBe(200);
    expect(await locked()).toEqual([`lock-${perOrg - 1}`, `lock-${perOrg}`]);
    expect((await host.services.directory.counts('u-lock')).workflows).toBe(perOrg + 2);
    const member = await token({ sub: 'u-use', org: 'o-lock' });
    expectProblem(
      await host.call('PUT', '/api/billing/locks', { token: member, body: { workflows: [] } }),
      403,
      'not_a_member',
    );
  });
});
