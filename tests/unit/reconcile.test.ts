import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { CREDIT_PACKS } from '../../src/billing/catalog.js';
import { createCreditPurchases } from '../../src/billing/credit-purchases.js';
import { SUBSCRIPTION_ROW } from '../../src/billing/owner/keys.js';
import {
  type CheckoutSessionInfo,
  type EventSummary,
  type Page,
  PaymentsError,
  type PaymentsGateway,
  type SubscriptionInfo,
} from '../../src/billing/payments.js';
import type { EventQueue } from '../../src/billing/queue.js';
import {
  classifyFailure,
  createReconciler,
  RECONCILE_EVENT_TYPES,
  type ReconcilerOptions,
} from '../../src/billing/reconcile.js';
import {
  claimState,
  INITIAL_STATE,
  parseState,
  RECONCILE_PARTITION,
  RUN_PREFIX,
  STATE_ROW,
  stateProps,
} from '../../src/billing/reconcile-state.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from '../support/env.js';
import { gatewayDouble } from '../support/gateway-double.js';
import { token } from '../support/harness.js';
import { givenSubscription, manualClock } from '../support/memory.js';
import { priceInfo, subscriptionInfo } from '../support/stripe-fixtures.js';

const START = '2026-11-15T12:00:00.000Z';
const MINUTE = 60_000;

/** A page of `items` from the opaque cursor (an index here), as the gateway pages Stripe's lists. */
function pageOf<T>(items: readonly T[], cursor: string | null, limit: number): Page<T> {
  const from = cursor === null ? 0 : Number(cursor);
  const next = from + limit;
  return { items: items.slice(from, next), nextCursor: next < items.length ? String(next) : null };
}

const unusedQueue: EventQueue = {
  name: 'unused',
  send: async () => {
    throw new Error('no queue in unit tests');
  },
  ping: async () => undefined,
};

/**
 * Stripe as the reconciler sees it: subscriptions per customer, events and paid sessions, with the list
 * calls recorded. Methods the reconciler never reaches throw.
 */
function fakeStripe() {
  const subscriptions = new Map<string, SubscriptionInfo[]>();
  const events: EventSummary[] = [];
  const sessions: CheckoutSessionInfo[] = [];
  const calls = {
    listEvents: [] as Array<{
      since: string;
      cursor: string | null;
      limit: number;
      types: readonly string[];
    }>,
    listPaidPaymentSessions: [] as Array<{ since: string; cursor: string | null; limit: number }>,
    listSubscriptions: [] as string[],
  };
  /** Makes `listSubscriptions` of a customer fail, as an outage would. */
  const failing = new Map<string, Error>();
  const payments: PaymentsGateway = gatewayDouble({
    createCustomer: async ({ ownerId }) => ({ id: `cus_${ownerId}` }),
    // The credit pack's live price, which a grant checks the session's line item and amount against.
    async pricesByLookupKey(keys) {
      return keys
        .filter((key) => key === 'credits_5k')
        .map((key) => ({
          id: 'price_credits_5k',
          lookupKey: key,
          unitAmount: 1_000,
          currency: 'usd',
          interval: null,
          productId: 'prod_credits',
          productMetadata: {},
        }));
    },
    async listSubscriptions(customerId) {
      calls.listSubscriptions.push(customerId);
      const failure = failing.get(customerId);
      if (failure) throw failure;
      return subscriptions.get(customerId) ?? [];
    },
    async listEvents({ since, types, cursor, limit }) {
      calls.listEvents.push({ since: since.toISOString(), cursor, limit, types });
      const found = events
        .filter((e) => e.created >= since && types.includes(e.type))
        .sort((a, b) => a.created.getTime() - b.created.getTime());
      return pageOf(found, cursor, limit);
    },
    async listPaidPaymentSessions({ since, cursor, limit }) {
      calls.listPaidPaymentSessions.push({ since: since.toISOString(), cursor, limit });
      return pageOf(
        sessions.filter((s) => s.created >= since),
        cursor,
        limit,
      );
    },
  });
  return { payments, subscriptions, events, sessions, calls, failing };
}

const subscription = (customerId: string, status: SubscriptionInfo['status']): SubscriptionInfo =>
  subscriptionInfo({
    id: `sub_${customerId}`,
    customerId,
    status,
    items: [{ id: `si_${customerId}`, price: priceInfo({ id: 'price_pro' }), quantity: 1 }],
  });

let eventSeq = 0;
const event = (customerId: string | null, created: string, type = 'customer.subscription.updated') => ({
  id: `evt_${++eventSeq}`,
  type,
  created: new Date(created),
  objectId: customerId ? `sub_${customerId}` : 'cs_guest',
  customerId,
});

const paidSession = (id: string, customerId: string | null, created: string): CheckoutSessionInfo => ({
  id,
  url: null,
  mode: 'payment',
  status: 'complete',
  paymentStatus: 'paid',
  customerId,
  subscriptionId: null,
  paymentIntentId: `pi_${id}`,
  amountTotal: 1_000,
  currency: 'usd',
  lineItems: [{ priceId: 'price_credits_5k', quantity: 1 }],
  created: new Date(created),
  metadata: { pack: 'credits_5k' },
});

function setup(options: ReconcilerOptions = {}) {
  const clock = manualClock(START);
  const stripe = fakeStripe();
  const config = loadConfig({ BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true', ...baseTestEnv });
  const services: Services = createServices(config, {
    clock,
    tables: { directory: createMemoryTable('directory'), billing: createMemoryTable('billing') },
    queue: unusedQueue,
    payments: stripe.payments,
  });
  const reconcilerWith = (more: ReconcilerOptions = {}) =>
    createReconciler({
      table: services.tables.billing,
      payments: stripe.payments,
      customers: services.customers,
      sync: services.sync,
      purchases: createCreditPurchases({
        table: services.tables.billing,
        owners: services.owners,
        payments: stripe.payments,
        customers: services.customers,
        pricing: services.pricing,
        packs: CREDIT_PACKS,
        clock,
        log: () => undefined,
      }),
      clock,
      options: { ...options, ...more },
    });
  /** An owner with a Stripe customer (`cus_<owner>`). */
  const owner = async (ownerId: string) => services.customers.ensure(ownerId);
  const state = async () => {
    const row = await services.tables.billing.get(RECONCILE_PARTITION, STATE_ROW);
    return row ? parseState(row.props) : undefined;
  };
  const status = async (ownerId: string) => (await services.owners.read(ownerId)).subscription?.state.status;
  return { clock, stripe, services, reconciler: reconcilerWith(), reconcilerWith, owner, state, status };
}

describe('the reconciler', () => {
  it('asks Stripe for at most 20 event types, the most its `types` filter takes', () => {
    expect(RECONCILE_EVENT_TYPES.length).toBeLessThanOrEqual(20);
    expect(RECONCILE_EVENT_TYPES).toContain('customer.subscription.deleted');
    expect(RECONCILE_EVENT_TYPES).toContain('checkout.session.completed');
    expect(RECONCILE_EVENT_TYPES).toContain('invoice.payment_failed');
    expect(RECONCILE_EVENT_TYPES).not.toContain('charge.refunded');
  });

  it('repairs a customer named by a recent event, audited as the reconciler, and moves the watermark', async () => {
    const { stripe, services, reconciler, owner, state, status } = setup();
    const customer = await owner('alice');
    // A checkout paid while webhooks were lost: Stripe has the subscription, we have nothing.
    stripe.subscriptions.set(customer, [subscription(customer, 'active')]);
    stripe.events.push(event(customer, '2026-11-15T11:00:00Z', 'customer.subscription.created'));

    const report = await reconciler.run();
    expect(report).toMatchObject({
      outcome: 'completed',
      scope: { kind: 'all' },
      syncs: { events: { examined: 1, applied: 1, unchanged: 0 } },
      changes: [{ ownerId: 'alice', customerId: customer, foundBy: 'events', plan: 'pro', status: 'active' }],
      watermarks: { events: START, sessions: START },
    });
    expect(await status('alice')).toBe('active');
    // The first run looks back the default 7 days.
    expect(stripe.calls.listEvents[0]?.since).toBe(
      new Date(Date.parse(START) - 168 * 3_600_000).toISOString(),
    );

    // Beside the row of the customer link the test made (`customer_linked`).
    const audit = (await services.tables.billing.list('alice', { prefix: 'audit|' })).filter(
      (row) => row.props.kind === 'subscription_changed',
    );
    expect(audit.map((row) => row.props)).toEqual([
      expect.objectContaining({ causeKind: 'reconcile', causeId: report.runId, actor: 'reconciler' }),
    ]);
    const runs = await services.tables.billing.list(RECONCILE_PARTITION, { prefix: RUN_PREFIX });
    expect(runs.map((row) => row.props)).toEqual([
      expect.objectContaining({
        runId: report.runId,
        actor: 'timer',
        scope: 'all',
        outcome: 'completed',
        eventsApplied: 1,
        changedOwners: 'alice',
      }),
    ]);
    expect((await state())?.run).toMatchObject({ id: report.runId, leaseUntil: null });
  });

  it('skips and counts customers that are not ours, and events without a customer', async () => {
    const { stripe, reconciler } = setup();
    stripe.events.push(event('cus_stranger', '2026-11-15T11:00:00Z'), event(null, '2026-11-15T11:01:00Z'));
    const report = await reconciler.run();
    expect(report.outcome).toBe('completed');
    expect(report.syncs.events).toMatchObject({ examined: 1, unknownCustomers: 1, failed: 0 });
    expect(report.failures).toEqual([]);
  });

  it('syncs every owner held as live, catching a change no listed event names', async () => {
    const { stripe, services, reconciler, owner, status } = setup();
    const live = await owner('bob');
    const ended = await owner('carol');
    await givenSubscription(services, 'bob', { plan: 'pro', status: 'active', stripeCustomerId: live });
    await givenSubscription(services, 'carol', { plan: 'pro', status: 'canceled', stripeCustomerId: ended });
    stripe.subscriptions.set(live, [subscription(live, 'unpaid')]);

    const report = await reconciler.run();
    expect(report.syncs.owners).toMatchObject({ examined: 1, applied: 1 });
    expect(report.changes).toEqual([
      expect.objectContaining({ ownerId: 'bob', foundBy: 'live_owners', status: 'unpaid' }),
    ]);
    expect(await status('bob')).toBe('unpaid');
    // The canceled owner is not re-read.
    expect(stripe.calls.listSubscriptions).toEqual([live]);

    // Nothing changed since: a second run reads bob again and applies nothing.
    const again = await reconciler.run();
    expect(again.syncs.owners).toMatchObject({ examined: 1, applied: 0, unchanged: 1 });
  });

  it('reads an owner once per run even when an event names it too', async () => {
    const { stripe, services, reconciler, owner } = setup();
    const customer = await owner('dana');
    await givenSubscription(services, 'dana', { plan: 'pro', status: 'active', stripeCustomerId: customer });
    stripe.subscriptions.set(customer, [subscription(customer, 'active')]);
    stripe.events.push(event(customer, '2026-11-15T11:00:00Z'));
    const report = await reconciler.run();
    expect(report.syncs.events.examined).toBe(1);
    expect(report.syncs.owners.examined).toBe(0);
    expect(stripe.calls.listSubscriptions).toEqual([customer]);
  });

  it('is bounded per run and resumes where it stopped: events by cursor, live owners by partition', async () => {
    const { stripe, services, reconcilerWith, owner, state } = setup();
    const reconciler = reconcilerWith({ maxItems: 2 });
    const customers: string[] = [];
    for (const name of ['o1', 'o2', 'o3', 'o4', 'o5']) {
      const customer = await owner(name);
      customers.push(customer);
      await givenSubscription(services, name, { plan: 'pro', status: 'active', stripeCustomerId: customer });
      stripe.subscriptions.set(customer, [subscription(customer, 'past_due')]);
    }
    // Events name the first three customers only (two events for o1).
    stripe.events.push(
      event(customers[0] ?? '', '2026-11-15T10:00:00Z'),
      event(customers[0] ?? '', '2026-11-15T10:01:00Z'),
      event(customers[1] ?? '', '2026-11-15T10:02:00Z'),
      event(customers[2] ?? '', '2026-11-15T10:03:00Z'),
    );

    const first = await reconciler.run();
    expect(first.outcome).toBe('partial');
    expect(first.syncs.events.examined).toBe(2);
    expect(first.syncs.owners.examined).toBe(2);
    const afterFirst = await state();
    expect(afterFirst?.events).toMatchObject({ watermark: null, cursor: expect.any(String) });
    expect(afterFirst?.owners.after).not.toBeNull();
    // Never a page larger than the budget left.
    expect(stripe.calls.listEvents.every((call) => call.limit <= 2)).toBe(true);

    const runs = [first];
    for (let i = 0; i < 4 && runs.at(-1)?.outcome !== 'completed'; i++) runs.push(await reconciler.run());
    expect(runs.at(-1)?.outcome).toBe('completed');
    // Every owner was repaired exactly once across the runs, by one pass or the other.
    const repaired = runs.flatMap((r) => r.changes.map((c) => c.ownerId)).sort();
    expect(repaired).toEqual(['o1', 'o2', 'o3', 'o4', 'o5']);
    // The resumed event pass kept its `since` and continued from the cursor, not from the start.
    const sinces = new Set(stripe.calls.listEvents.map((call) => call.since));
    expect(sinces.size).toBe(1);
    expect(stripe.calls.listEvents.filter((call) => call.cursor === null)).toHaveLength(1);
    expect((await state())?.owners).toMatchObject({ after: null, sweeps: 1 });
  });

  it('looks again over an overlap before the watermark, for events Stripe listed late', async () => {
    const { clock, stripe, reconciler, owner, status } = setup();
    await reconciler.run();
    const watermark = START;
    const customer = await owner('erin');
    stripe.subscriptions.set(customer, [subscription(customer, 'active')]);
    // Created two minutes before the first run's start, but not listed until after it.
    stripe.events.push(event(customer, new Date(Date.parse(START) - 2 * MINUTE).toISOString()));
    clock.set(new Date(Date.parse(START) + 15 * MINUTE).toISOString());
    const second = await reconciler.run();
    expect(stripe.calls.listEvents.at(-1)?.since).toBe(
      new Date(Date.parse(watermark) - 5 * MINUTE).toISOString(),
    );
    expect(second.changes.map((c) => c.ownerId)).toEqual(['erin']);
    expect(await status('erin')).toBe('active');
    expect(second.watermarks.events).toBe(new Date(Date.parse(START) + 15 * MINUTE).toISOString());
  });

  it('grants paid credit sessions never granted, once, and counts sessions of strangers', async () => {
    const { stripe, services, reconciler, owner } = setup();
    const customer = await owner('fay');
    stripe.sessions.push(
      paidSession('cs_guest', null, '2026-11-15T11:01:00Z'),
      paidSession('cs_stranger', 'cus_stranger', '2026-11-15T11:02:00Z'),
      // Within the overlap before the first run's start, so the second run lists it again.
      paidSession('cs_fay', customer, '2026-11-15T11:58:00Z'),
    );
    const first = await reconciler.run();
    expect(first.credits).toMatchObject({ examined: 3, granted: 1, unknownCustomers: 2 });
    expect(first.grants).toEqual([{ ownerId: 'fay', sessionId: 'cs_fay', credits: 5_000 }]);
    expect(await services.credits.balance('fay')).toBe(5_000);

    // The next run's overlap lists the session again: the grant's own marker keeps it at once.
    const second = await reconciler.run();
    expect(second.credits).toMatchObject({ granted: 0, alreadyGranted: 1 });
    expect(await services.credits.balance('fay')).toBe(5_000);
  });

  it('stops a pass on an outage and reads the same page next run, without moving the watermark', async () => {
    const { stripe, reconciler, owner, state, status } = setup();
    const a = await owner('gus');
    const b = await owner('hal');
    stripe.subscriptions.set(a, [subscription(a, 'active')]);
    stripe.subscriptions.set(b, [subscription(b, 'active')]);
    stripe.events.push(event(a, '2026-11-15T11:00:00Z'), event(b, '2026-11-15T11:01:00Z'));
    stripe.failing.set(b, new PaymentsError('unavailable', 'Stripe is down'));

    const failed = await reconciler.run();
    expect(failed.outcome).toBe('partial');
    expect(failed.failures).toEqual([
      expect.objectContaining({ pass: 'events', id: b, code: 'payments_unavailable' }),
    ]);
    expect((await state())?.events).toMatchObject({ watermark: null, cursor: null });
    expect(await status('gus')).toBe('active');

    stripe.failing.clear();
    const recovered = await reconciler.run();
    expect(recovered.outcome).toBe('completed');
    expect(recovered.changes.map((c) => c.ownerId)).toEqual(['hal']);
    expect(recovered.syncs.events).toMatchObject({ examined: 2, unchanged: 1, applied: 1 });
    expect((await state())?.events.watermark).not.toBeNull();
  });

  it('records a failure about one customer and goes on with the others', async () => {
    const { stripe, reconciler, owner, state } = setup();
    const a = await owner('ida');
    const b = await owner('jon');
    stripe.subscriptions.set(b, [subscription(b, 'active')]);
    stripe.events.push(event(a, '2026-11-15T11:00:00Z'), event(b, '2026-11-15T11:01:00Z'));
    stripe.failing.set(a, new PaymentsError('not_found', 'No such customer'));
    const report = await reconciler.run();
    expect(report.outcome).toBe('completed');
    expect(report.failures).toEqual([expect.objectContaining({ id: a, code: 'payments_not_found' })]);
    expect(report.changes.map((c) => c.ownerId)).toEqual(['jon']);
    expect((await state())?.events.watermark).toBe(START);
  });

  it('lets one of two concurrent runs work; the other stops at once', async () => {
    const { stripe, reconciler, owner, state } = setup();
    const customer = await owner('kim');
    stripe.subscriptions.set(customer, [subscription(customer, 'active')]);
    stripe.events.push(event(customer, '2026-11-15T11:00:00Z'));
    const [one, two] = await Promise.all([reconciler.run(), reconciler.run()]);
    const outcomes = [one.outcome, two.outcome].sort();
    expect(outcomes).toEqual(['busy', 'completed']);
    const winner = one.outcome === 'completed' ? one : two;
    const loser = one.outcome === 'busy' ? one : two;
    expect(loser.syncs.events.examined).toBe(0);
    expect((await state())?.run?.id).toBe(winner.runId);
    expect((await state())?.events.watermark).toBe(START);
  });

  it('waits for a live lease, takes over an expired one, and a run that lost its lease stops', async () => {
    const { clock, stripe, services, reconciler, owner } = setup();
    const table = services.tables.billing;
    // Another run holds the state until 12:05.
    await table.upsert(
      RECONCILE_PARTITION,
      STATE_ROW,
      stateProps({
        ...INITIAL_STATE,
        run: { id: 'rc-other', startedAt: START, leaseUntil: '2026-11-15T12:05:00.000Z', finishedAt: null },
      }),
    );
    const busy = await reconciler.run();
    expect(busy).toMatchObject({ outcome: 'busy', heldBy: { runId: 'rc-other' } });

    // It died: past its lease, the next run takes over.
    clock.set('2026-11-15T12:06:00.000Z');
    const customer = await owner('lee');
    stripe.subscriptions.set(customer, [subscription(customer, 'active')]);
    stripe.events.push(event(customer, '2026-11-15T11:00:00Z'));
    const original = stripe.payments.listEvents;
    // While this run works, a third run claims the state (as if this one had stalled past its lease).
    stripe.payments.listEvents = async (input) => {
      const page = await original(input);
      const claim = await claimState(table, 'rc-third', new Date('2026-11-15T13:00:00.000Z'), 60_000);
      expect(claim.kind).toBe('claimed');
      return page;
    };
    const superseded = await reconciler.run();
    expect(superseded.outcome).toBe('superseded');
    const row = await table.get(RECONCILE_PARTITION, STATE_ROW);
    expect(row && parseState(row.props).run?.id).toBe('rc-third');
  });

  it('with an owner id, repairs only that owner and moves no watermark', async () => {
    const { stripe, services, reconciler, owner, state, status } = setup();
    const mine = await owner('max');
    const other = await owner('ned');
    await givenSubscription(services, 'max', { plan: 'pro', status: 'active', stripeCustomerId: mine });
    stripe.subscriptions.set(mine, [subscription(mine, 'unpaid')]);
    stripe.subscriptions.set(other, [subscription(other, 'active')]);
    stripe.events.push(event(other, '2026-11-15T11:00:00Z'));
    stripe.sessions.push(
      paidSession('cs_max', mine, '2026-11-15T11:00:00Z'),
      paidSession('cs_ned', other, '2026-11-15T11:01:00Z'),
    );

    const report = await reconciler.run({ ownerId: 'max', actor: 'admin:root' });
    expect(report).toMatchObject({
      outcome: 'completed',
      scope: { kind: 'owner', ownerId: 'max', customerId: mine },
      syncs: { owners: { examined: 1, applied: 1 }, events: { examined: 0 } },
      grants: [{ ownerId: 'max', sessionId: 'cs_max' }],
      watermarks: { events: null, sessions: null },
    });
    expect(await status('max')).toBe('unpaid');
    expect(await status('ned')).toBeUndefined();
    expect(await services.credits.balance('ned')).toBe(0);
    expect(stripe.calls.listEvents).toEqual([]);
    expect(await state()).toBeUndefined();
    const runs = await services.tables.billing.list(RECONCILE_PARTITION, { prefix: RUN_PREFIX });
    expect(runs[0]?.props).toMatchObject({ actor: 'admin:root', scope: 'owner:max' });

    // An owner without a Stripe customer has nothing to compare.
    expect(await reconciler.run({ ownerId: 'nobody' })).toMatchObject({
      outcome: 'completed',
      scope: { customerId: null },
    });
  });

  it('classifies failures by class and code, never by message', () => {
    expect(classifyFailure(new PaymentsError('rate_limited', 'x'))).toBe('systemic');
    expect(classifyFailure(new PaymentsError('authentication', 'x'))).toBe('systemic');
    expect(classifyFailure(new PaymentsError('not_found', 'unavailable'))).toBe('item');
    expect(classifyFailure(new Error('store_unavailable'))).toBe('item');
  });

  it('keeps its state row readable after every write', async () => {
    const { services } = setup();
    const row = await services.tables.billing.get(RECONCILE_PARTITION, STATE_ROW);
    expect(row).toBeUndefined();
    expect(parseState(stateProps(INITIAL_STATE))).toEqual(INITIAL_STATE);
    expect(SUBSCRIPTION_ROW).toBe('s|o|sub');
  });
});

describe('POST /api/ops/reconcile, in process', () => {
  const call = async (services: Services, options: { token?: string; body?: unknown }) => {
    const { opsReconcile } = await import('../../src/functions/ops-reconcile.js');
    const { HttpRequest, HttpResponse, InvocationContext } = await import(
      '../../src/http/functions-runtime.js'
    );
    const { toHandler } = await import('../../src/http/route.js');
    const headers: Record<string, string> = {};
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    const request = new HttpRequest({
      url: 'http://localhost/api/ops/reconcile',
      method: 'POST',
      headers,
      ...(options.body === undefined ? {} : { body: { string: JSON.stringify(options.body) } }),
    });
    const response = await toHandler(opsReconcile, () => services)(
      request,
      new InvocationContext({ functionName: 'opsReconcile' }),
    );
    // Our routes answer with plain response objects (`json()`), never the class.
    if (response instanceof HttpResponse) throw new Error('expected a plain response');
    const text = typeof response.body === 'string' ? response.body : '';
    return { status: response.status, body: response.jsonBody ?? (text ? JSON.parse(text) : undefined) };
  };

  it('needs the admin role: a user or service token is refused with 403', async () => {
    const { services } = setup();
    for (const roles of [[], ['service']]) {
      const response = await call(services, { token: await token({ sub: 'u1', roles }), body: {} });
      expect(response.status).toBe(403);
      expect(response.body).toMatchObject({ code: 'admin_role_required' });
    }
    expect((await call(services, { body: {} })).status).toBe(401);
  });

  it('refuses unknown fields and malformed owner ids', async () => {
    const { services } = setup();
    const admin = await token({ sub: 'root', roles: ['admin'] });
    for (const body of [{ owner: 'x' }, { ownerId: 'a/b' }]) {
      const response = await call(services, { token: admin, body });
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({ code: 'invalid_body' });
    }
  });

  it('runs with or without a body and answers the report; 409 while another run holds the state', async () => {
    const { services, stripe, owner } = setup();
    const admin = await token({ sub: 'root', roles: ['admin'] });
    const customer = await owner('olive');
    stripe.subscriptions.set(customer, [subscription(customer, 'active')]);
    const scoped = await call(services, { token: admin, body: { ownerId: 'olive' } });
    expect(scoped.status).toBe(200);
    expect(scoped.body).toMatchObject({
      outcome: 'completed',
      scope: { kind: 'owner', ownerId: 'olive' },
      changes: [{ ownerId: 'olive', status: 'active' }],
    });
    const all = await call(services, { token: admin });
    expect(all).toMatchObject({ status: 200, body: { outcome: 'completed', scope: { kind: 'all' } } });

    await services.tables.billing.upsert(
      RECONCILE_PARTITION,
      STATE_ROW,
      stateProps({
        ...INITIAL_STATE,
        run: { id: 'rc-held', startedAt: START, leaseUntil: '2026-11-15T13:00:00.000Z', finishedAt: null },
      }),
    );
    const busy = await call(services, { token: admin, body: {} });
    expect(busy.status).toBe(409);
    expect(busy.body).toMatchObject({ code: 'reconcile_in_progress' });
  });
});
