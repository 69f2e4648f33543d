import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { auditAction } from '../../src/billing/audit/entry.js';
import { encodeAuditId } from '../../src/billing/audit/ids.js';
import { CREDIT_PACKS, type CreditPack } from '../../src/billing/catalog.js';
import { expectProblem, startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * The audit trail over HTTP (local host, Stripe sandbox, Azurite): every kind of billing change leaves
 * one row naming its actor and cause, listed newest first by owner, across owners and to the billing
 * owner; operators revert an admin change through a registered handler.
 */

const OWNER = 'u-audit';
const ORG = 'o-audit';
const BULK = 'u-audit-bulk';
const pack = CREDIT_PACKS[0] as CreditPack;

const entrySchema = z.object({
  id: z.string(),
  ownerId: z.string().nullable(),
  at: z.string(),
  kind: z.string(),
  actor: z.object({ kind: z.string(), id: z.string() }),
  cause: z.object({ kind: z.string(), id: z.string(), type: z.string().optional() }),
  before: z.unknown(),
  after: z.unknown(),
  revertOf: z.string().optional(),
  reason: z.string().optional(),
  details: z.record(z.string(), z.unknown()),
});
const pageSchema = z.object({
  items: z.array(entrySchema),
  corrupt: z.array(z.unknown()),
  nextCursor: z.string().nullable(),
});
type Entry = z.infer<typeof entrySchema>;

describe('the audit trail end to end', () => {
  let host: TestHost;
  let owner: string;
  let member: string;
  let service: string;
  let admin: string;
  let reconcileRunId: string;

  const sandbox = (path: string, body: unknown = {}) => host.sandboxOk('POST', path, body);
  const get = async (path: string, as: string) => {
    const response = await host.call('GET', path, { token: as });
    expect(response.status, response.text).toBe(200);
    return pageSchema.parse(response.body);
  };
  /** Every entry of a listing, following its cursors; also checks each page's size. */
  const pages = async (path: string, as: string, limit: number) => {
    const items: Entry[] = [];
    let cursor: string | null = null;
    let count = 0;
    do {
      const sep = path.includes('?') ? '&' : '?';
      const page = await get(
        `${path}${sep}limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        as,
      );
      expect(page.items.length).toBeLessThanOrEqual(limit);
      items.push(...page.items);
      cursor = page.nextCursor;
      count++;
    } while (cursor !== null && count < 100);
    return { items, pages: count };
  };
  const _eventually = async <T>(read: () => Promise<T>, accept: (value: T) => boolean, ms = 20_000) => {
    const until = Date.now() + ms;
    let last = await read();
    while (!accept(last)) {
      if (Date.now() > until) throw new Error(`not reached in ${ms} ms; last: ${JSON.stringify(last)}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      await host.settle();
      last = await read();
    }
    return last;
  };
  const ownerTrail = async () => (await pages(`/api/ops/audit?ownerId=${OWNER}`, admin, 200)).items;

  beforeAll(async () => {
    host = await startTestHost({ env: { BILLING_SEAT_SYNC_DELAY_SECONDS: '1' } });
    service = await host.serviceToken();
    owner = await token({ sub: OWNER, org: ORG });
    member = await token({ sub: 'u-audit-member', org: ORG });
    admin = await token({ sub: 'ops-anna', roles: ['admin'] });
    await host.call('PUT', `/api/directory/orgs/${ORG}`, { token: service, body: { creatorId: OWNER } });

    // A subscription, through Checkout and Stripe's webhooks.
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'team', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await sandbox(`/checkout/${z.object({ sessionId: z.string() }).parse(checkout.body).sessionId}/pay`);
    await host.settle();

    // A credit pack.
    const credits = await host.call('POST', '/api/billing/credits/checkout', {
      token: owner,
      body: { pack: pack.id },
    });
    expect(credits.status, credits.text).toBe(201);
    await sandbox(`/checkout/${z.object({ sessionId: z.string() }).parse(credits.body).sessionId}/pay`);
    await host.settle();

    // The seat cap, then more people than the plan includes: a seat sync.
    const cap = await host.call('PUT', '/api/billing/seats', { token: owner, body: { maxSeats: 20 } });
    expect(cap.status, cap.text).toBe(200);
    for (const user of ['u-audit-member', 'u-audit-m2', 'u-audit-m3'])
      expect(
        (await host.call('PUT', `/api/directory/orgs/${ORG}/members/${user}`, { token: service })).status,
      ).toBe(201);
    await host.eventually(ownerTrail, (items) => items.some((item) => item.kind === 'seats_synced'));

    // Lock picks.
    const picks = await host.call('PUT', '/api/billing/locks', { token: owner, body: { workflows: [] } });
    expect(picks.status, picks.text).toBe(200);

    // A timer: the period's usage closed into its record (the rollover job, run past the period's end).
    const consumed = await host.call('POST', '/api/usage/consume', {
      token: service,
      body: { subject: { orgId: ORG }, meter: 'executions', quantity: 1, idempotencyKey: 'audit-run-1' },
    });
    expect(consumed.status, consumed.text).toBe(200);
    const period = (await host.services.entitlements.capabilities(OWNER)).period;
    const closed = await host.services.rollover.run({
      now: new Date(period.end.getTime() + 86_400_000),
      runId: 'rollover-run-1',
    });
    expect(closed.closed).toBeGreaterThanOrEqual(1);

    // A reconciler repair: Stripe changed while its webhooks were lost.
    await sandbox('/_sandbox/webhooks', { enabled: false });
    const subscriptionId = (await host.services.owners.read(OWNER)).subscription?.state.stripeSubscriptionId;
    await sandbox(`/_sandbox/subscriptions/${subscriptionId}/status`, { status: 'unpaid' });
    const reconcile = await host.call('POST', '/api/ops/reconcile', {
      token: admin,
      body: { ownerId: OWNER },
    });
    expect(reconcile.status, reconcile.text).toBe(200);
    reconcileRunId = z.object({ runId: z.string() }).parse(reconcile.body).runId;
    await sandbox('/_sandbox/webhooks', { enabled: true });

    // 1,000 rows of another owner, written through the real write path: `auditAction` in transactions of
    // 100 rows through the billing table composition wires (so through the day index too).
    const start = Date.parse('2026-11-20T00:00:00.000Z');
    for (let batch = 0; batch < 10; batch++) {
      const actions = Array.from({ length: 100 }, (_, j) => {
        const i = batch * 100 + j;
        return auditAction(
          {
            at: new Date(start - i * 60_000).toISOString(),
            kind: 'bulk_change',
            actor: { kind: 'service', id: 'bulk-seeder' },
            cause: { kind: i % 2 === 0 ? 'action' : 'timer', id: `bulk-${i}` },
            before: { i: i - 1 },
            after: { i },
          },
          `bulk-${i}`,
        );
      });
      await host.services.tables.billing.transact(BULK, actions);
    }
  }, 180_000);
  afterAll(async () => {
    await host?.close();
  });

  it('lists every kind of change once, each naming its actor and cause, newest first', async () => {
    const items = await ownerTrail();
    const times = items.map((item) => Date.parse(item.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    const find = (kind: string, test: (item: Entry) => boolean = () => true) =>
      items.filter((item) => item.kind === kind && test(item));

    const fromStripe = find('subscription_changed', (item) => item.actor.kind === 'stripe');
    expect(fromStripe.length).toBeGreaterThanOrEqual(1);
    for (const item of fromStripe)
      expect(item.cause).toMatchObject({ kind: 'event', id: expect.stringMatching(/^evt_/) });
    expect(fromStripe.at(-1)).toMatchObject({ before: null, after: { plan: 'team' } });

    expect(find('customer_linked')).toEqual([
      expect.objectContaining({
        actor: { kind: 'user', id: OWNER },
        cause: expect.objectContaining({ kind: 'action', id: expect.stringMatching(/^customer-cus_/) }),
        before: null,
        after: { customerId: expect.stringMatching(/^cus_/) },
      }),
    ]);
    expect(find('credits_granted')).toEqual([
      expect.objectContaining({
        actor: { kind: 'stripe', id: 'stripe' },
        cause: expect.objectContaining({ kind: 'event', id: expect.stringMatching(/^evt_/) }),
        before: { balance: 0 },
        after: { balance: pack.credits },
      }),
    ]);
    expect(find('seat_cap_changed')).toEqual([
      expect.objectContaining({
        actor: { kind: 'user', id: OWNER },
        cause: expect.objectContaining({ kind: 'action', type: 'seats.cap' }),
        before: { maxSeats: null },
        after: { maxSeats: 20 },
      }),
    ]);
    expect(find('seats_synced').length).toBeGreaterThanOrEqual(1);
    expect(find('seats_synced')[0]).toMatchObject({
      actor: { kind: 'seat_sync' },
      cause: { kind: 'seat_sync' },
      after: { now: 4 },
    });
    expect(find('lock_picks_changed')).toEqual([
      expect.objectContaining({
        actor: { kind: 'user', id: OWNER },
        cause: expect.objectContaining({ kind: 'action', type: 'locks.keep' }),
        after: { workflows: [], credentials: [] },
      }),
    ]);
    expect(find('usage_period_closed')).toEqual([
      expect.objectContaining({
        actor: { kind: 'timer', id: 'usageRollover' },
        cause: { kind: 'timer', id: 'rollover-run-1', type: 'usage.rollover' },
        after: expect.objectContaining({ used: 1, meter: 'executions' }),
      }),
    ]);
    expect(find('subscription_changed', (item) => item.actor.kind === 'reconciler')).toEqual([
      expect.objectContaining({
        cause: { kind: 'reconcile', id: reconcileRunId, type: 'reconcile' },
        after: expect.objectContaining({ status: 'unpaid' }),
      }),
    ]);
    // Request ids name user actions; no two entries share an id.
    const caps = find('seat_cap_changed')[0];
    expect(caps?.cause.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(new Set(items.map((item) => item.id)).size).toBe(items.length);
  });

  it('filters by cause, actor and time, by owner and across owners', async () => {
    const events = (await pages(`/api/ops/audit?ownerId=${OWNER}&cause=event`, admin, 50)).items;
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(events.every((item) => item.cause.kind === 'event')).toBe(true);
    const byUser = (await pages(`/api/ops/audit?ownerId=${OWNER}&actor=user:${OWNER}`, admin, 50)).items;
    expect(byUser.map((item) => item.kind).sort()).toEqual([
      'customer_linked',
      'lock_picks_changed',
      'seat_cap_changed',
    ]);

    const across = (await pages('/api/ops/audit?cause=reconcile', admin, 50)).items;
    expect(across.map((item) => [item.ownerId, item.kind])).toEqual([[OWNER, 'subscription_changed']]);
    const timers = (await pages('/api/ops/audit?actor=timer', admin, 50)).items;
    expect(timers.map((item) => item.kind)).toEqual(['usage_period_closed']);

    // One hour of the bulk owner's minute-by-minute rows, by owner and across owners alike.
    const window = 'from=2026-11-19T10:00:00Z&to=2026-11-19T11:00:00Z';
    const hour = (await pages(`/api/ops/audit?ownerId=${BULK}&${window}`, admin, 200)).items;
    expect(hour).toHaveLength(60);
    expect(hour[0]?.at).toBe('2026-11-19T10:59:00.000Z');
    expect(hour.at(-1)?.at).toBe('2026-11-19T10:00:00.000Z');
    const hourAcross = (await pages(`/api/ops/audit?${window}`, admin, 200)).items;
    expect(hourAcross.map((item) => item.id)).toEqual(hour.map((item) => item.id));
  });

  it('pages through 1,000 rows newest first, by owner and across owners', async () => {
    const byOwner = await pages(`/api/ops/audit?ownerId=${BULK}`, admin, 200);
    expect(byOwner.items).toHaveLength(1000);
    expect(byOwner.pages).toBeGreaterThanOrEqual(5);
    expect(byOwner.items.map((item) => (item.after as { i: number }).i)).toEqual(
      Array.from({ length: 1000 }, (_, i) => i),
    );
    const across = await pages('/api/ops/audit?actor=service:bulk-seeder', admin, 200);
    expect(across.items.map((item) => item.id)).toEqual(byOwner.items.map((item) => item.id));
    const timers = (await pages(`/api/ops/audit?ownerId=${BULK}&cause=timer`, admin, 200)).items;
    expect(timers).toHaveLength(500);
  });

  it("shows the billing owner its own trail only, and nobody else's", async () => {
    const own = (await pages('/api/billing/audit', owner, 100)).items;
    expect(own.length).toBeGreaterThanOrEqual(7);
    expect(own.every((item) => item.ownerId === OWNER)).toBe(true);
    expect(own.map((item) => item.id)).toEqual((await ownerTrail()).map((item) => item.id));
    const causes = (await pages('/api/billing/audit?cause=action', owner, 100)).items;
    expect(causes.every((item) => item.cause.kind === 'action')).toBe(true);
    expectProblem(await host.call('GET', '/api/billing/audit', { token: member }), 403, 'billing_owner_only');
    // Another user's own trail is theirs (empty here), never this owner's.
    const stranger = await token({ sub: 'u-audit-stranger' });
    expect((await get('/api/billing/audit', stranger)).items).toEqual([]);
    expectProblem(
      await host.call('GET', `/api/billing/audit?ownerId=${OWNER}`, { token: stranger }),
      400,
      'invalid_query',
    );
  });

  it('refuses users and services on the operator routes, and bad queries with 400', async () => {
    for (const as of [owner, service]) {
      expectProblem(await host.call('GET', '/api/ops/audit', { token: as }), 403, 'admin_role_required');
      expectProblem(
        await host.call('POST', `/api/ops/audit/${encodeAuditId(OWNER, 'audit|n|1|x')}/revert`, {
          token: as,
          body: { reason: 'x' },
        }),
        403,
        'admin_role_required',
      );
    }
    for (const query of [
      'limit=0',
      'limit=201',
      'limit=ten',
      'cursor=not-a-cursor',
      `cursor=${Buffer.from('{"s":"x","d":"2026-12-01"}').toString('base64url')}&ownerId=${OWNER}`,
      'cause=weather',
      'from=yesterday',
      'from=2026-12-02&to=2026-12-01',
      'ownerId=bad|id',
      'colour=blue',
    ])
      expectProblem(
        await host.call('GET', `/api/ops/audit?${query}`, { token: admin }),
        400,
        'invalid_query',
      );
    expectProblem(
      await host.call('GET', '/api/billing/audit?limit=500', { token: owner }),
      400,
      'invalid_query',
    );
  });

  describe('revert', () => {
    const revert = (id: string, body: unknown = { reason: 'Set on the wrong owner (ticket 4711).' }) =>
      host.call('POST', `/api/ops/audit/${id}/revert`, { token: admin, body });
    /** An operator's change through its own route: an override of the workflows limit. */
    const adminChange = async (ownerId: string, workflows: number) => {
      const put = await host.call('PUT', `/api/ops/owners/${ownerId}/overrides`, {
        token: await token({ sub: 'ops-bob', roles: ['admin'] }),
        body: { limits: { workflows }, reason: 'migration help (ticket 4711)' },
      });
      expect(put.status, put.text).toBeLessThan(300);
      const page = await get(`/api/ops/audit?ownerId=${ownerId}&cause=admin&limit=1`, admin);
      const entry = page.items[0];
      if (!entry) throw new Error('no audit entry');
      return entry;
    };

    it("applies the change's before through the module that made it, audited with revertOf, and the revert itself; once", async () => {
      const check = () =>
        host.call('POST', '/api/entitlements/check', {
          token: service,
          body: { subject: { userId: OWNER }, feature: 'workflows' },
        });
      const pick = (body: unknown) =>
        z.object({ limit: z.number().nullable(), source: z.string() }).parse(body);
      const untouched = pick((await check()).body);
      const change = await adminChange(OWNER, 5000);
      expect(change).toMatchObject({
        kind: 'override_set',
        actor: { kind: 'admin', id: 'ops-bob' },
        before: null,
        after: { limits: { workflows: 5000 } },
      });
      expect(pick((await check()).body)).toEqual({ limit: 5000, source: 'override' });
      const reverted = await revert(change.id);
      expect(reverted.status, reverted.text).toBe(200);
      const { revertId } = z.object({ revertId: z.string() }).parse(reverted.body);
      // Exactly the "before": no overrides, the plan's limit in force again.
      expectProblem(
        await host.call('GET', `/api/ops/owners/${OWNER}/overrides`, { token: admin }),
        404,
        'overrides_not_set',
      );
      expect(pick((await check()).body)).toEqual(untouched);

      const recent = (await get(`/api/ops/audit?ownerId=${OWNER}&cause=admin&limit=10`, admin)).items;
      expect(recent.slice(0, 3)).toEqual([
        expect.objectContaining({
          id: revertId,
          kind: 'audit_reverted',
          actor: { kind: 'admin', id: 'ops-anna' },
          revertOf: change.id,
          reason: 'Set on the wrong owner (ticket 4711).',
        }),
        expect.objectContaining({
          kind: 'override_removed',
          actor: { kind: 'admin', id: 'ops-anna' },
          before: expect.objectContaining({ limits: { workflows: 5000 } }),
          after: null,
          revertOf: change.id,
        }),
        expect.objectContaining({ id: change.id }),
      ]);
      expectProblem(await revert(change.id), 409, 'already_reverted');
    });

    it('gives the claim back when the handler refuses, so the operator can try again at once', async () => {
      const action = auditAction(
        {
          at: new Date().toISOString(),
          kind: 'enforcement_set',
          actor: { kind: 'admin', id: 'ops-bob' },
          cause: { kind: 'admin', id: 'req-enf-bad' },
          reason: 'a row its handler cannot apply',
          before: { unknown: true },
          after: { mode: 'off', features: {} },
          revertible: 'enforcement',
        },
        'req-enf-bad',
      );
      await host.services.tables.billing.transact(BULK, [action]);
      const id = encodeAuditId(BULK, action.rowKey);
      expectProblem(await revert(id), 409, 'unrevertible_before');
      // Not `revert_in_progress`: the refused attempt released its claim.
      expectProblem(await revert(id), 409, 'unrevertible_before');
    });

    it('refuses Stripe changes (pointing to the portal or dashboard), other changes, kinds without a handler, unknown and invalid ids', async () => {
      const trail = await ownerTrail();
      const stripe = trail.find((item) => item.actor.kind === 'stripe');
      const stripeAnswer = await revert(stripe?.id ?? '');
      expectProblem(stripeAnswer, 409, 'stripe_change');
      expect((stripeAnswer.body as { detail: string }).detail).toMatch(/portal.*dashboard/);
      expectProblem(
        await revert(trail.find((item) => item.kind === 'seat_cap_changed')?.id ?? ''),
        409,
        'not_revertible',
      );

      expectProblem(
        await revert(encodeAuditId(OWNER, 'audit|n|0000000000001|nothing')),
        404,
        'audit_not_found',
      );
      expectProblem(await revert('not-an-id'), 400, 'invalid_id');
      expectProblem(await revert(encodeAuditId(OWNER, 'consume|k1')), 400, 'invalid_id');
      const change = await adminChange(BULK, 20);
      for (const body of [{}, { reason: '' }, { reason: 'x'.repeat(501) }, { reason: 'ok', extra: 1 }])
        expectProblem(await revert(change.id, body), 400, 'invalid_body');
    });
  });
});
