import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { catalog } from '../../src/billing/catalog.js';
import {
  type PaymentsGateway,
  SEAT_GENERATION_METADATA,
  type SubscriptionInfo,
} from '../../src/billing/payments.js';
import { createSeatSync, SEAT_SYNC_ROW, type SeatSyncOptions } from '../../src/billing/seat-sync.js';
import type { EntityTable } from '../../src/billing/store.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from '../support/env.js';
import { gatewayDouble } from '../support/gateway-double.js';
import { givenSubscription, manualClock } from '../support/memory.js';
import { faultyTables } from '../support/tables.js';

/** A Stripe subscription as far as seats go: the quantity now, the one scheduled for renewal, metadata. */
function fakeStripe() {
  const state = {
    status: 'active' as SubscriptionInfo['status'],
    quantity: 3,
    next: null as number | null,
    metadata: {} as Record<string, string>,
    calls: [] as Array<{ now: number; next: number; generation: number; key: string }>,
    keys: new Set<string>(),
    block: undefined as Promise<void> | undefined,
  };
  const info = (): SubscriptionInfo => ({
    id: 'sub_team',
    customerId: 'cus_alice',
    status: state.status,
    items: [{ id: 'si_team', price: teamPrice, quantity: state.quantity }],
    currentPeriodStart: new Date('2026-11-01T00:00:00Z'),
    currentPeriodEnd: new Date('2026-12-01T00:00:00Z'),
    billingCycleAnchor: new Date('2026-11-01T00:00:00Z'),
    cancelAtPeriodEnd: false,
    created: new Date('2026-11-01T00:00:00Z'),
    scheduleId: state.next === null ? null : 'sub_sched_1',
    scheduledPhase:
      state.next === null
        ? null
        : {
            scheduleId: 'sub_sched_1',
            startsAt: new Date('2026-12-01T00:00:00Z'),
            price: teamPrice,
            quantity: state.next,
          },
    latestInvoiceAttempts: 0,
    metadata: { ...state.metadata },
  });
  const payments: PaymentsGateway = gatewayDouble({
    async getSubscription() {
      return info();
    },
    async setSeats({ quantityNow, quantityNext, generation, idempotencyKey }) {
      await state.block;
      // Stripe's idempotency: the same key twice changes nothing the second time.
      if (state.keys.has(idempotencyKey)) return;
      state.keys.add(idempotencyKey);
      state.calls.push({ now: quantityNow, next: quantityNext, generation, key: idempotencyKey });
      state.quantity = quantityNow;
      state.next = quantityNext === quantityNow ? null : quantityNext;
      state.metadata[SEAT_GENERATION_METADATA] = String(generation);
    },
  });
  return { state, payments };
}

const teamLookup = catalog.team.prices?.monthly.lookupKey ?? 'team_monthly';
const teamPrice = {
  id: 'price_team',
  lookupKey: teamLookup,
  unitAmount: 1_000,
  currency: 'usd',
  interval: 'month' as const,
  productId: 'prod_team',
  productMetadata: {},
};

const OPTIONS: SeatSyncOptions = { maxUpdatesPerHour: 20, leaseSeconds: 60 };

async function setup(
  options: SeatSyncOptions = OPTIONS,
  wrap: (t: { directory: EntityTable; billing: EntityTable }) => {
    directory: EntityTable;
    billing: EntityTable;
  } = (t) => t,
) {
  const clock = manualClock();
  const raw = { directory: createMemoryTable('directory'), billing: createMemoryTable('billing') };
  const tables = wrap(raw);
  const config = loadConfig({ BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true', ...baseTestEnv });
  const stripe = fakeStripe();
  const services: Services = createServices(config, {
    clock,
    tables,
    queue: { name: 'q', send: async () => undefined, ping: async () => undefined },
    payments: stripe.payments,
  });
  const sync = createSeatSync({
    table: tables.billing,
    owners: services.owners,
    payments: stripe.payments,
    catalog,
    clock,
    options,
  });
  await services.directory.putOrg('acme', { creatorId: 'alice' });
  await givenSubscription(services, 'alice', {
    plan: 'team',
    status: 'active',
    seats: 3,
    stripeSubscriptionId: 'sub_team',
    stripeCustomerId: 'cus_alice',
  });
  const add = (...users: string[]) =>
    Promise.all(users.map((u) => services.directory.putMember('acme', u, { enforce: true })));
  const remove = (...users: string[]) =>
    Promise.all(users.map((u) => services.directory.deleteMember('acme', u)));
  return { clock, services, sync, stripe, add, remove, raw };
}

describe('seat sync', () => {
  it('coalesces a burst: the first sync sets the absolute quantity, the rest find it applied', async () => {
    const { sync, stripe, add } = await setup();
    await add('b', 'c', 'd', 'e');
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push((await sync.run('alice', 'membership')).kind);
    expect(outcomes).toEqual(['applied', 'already_applied', 'already_applied', 'already_applied']);
    expect(stripe.state.calls).toHaveLength(1);
    expect(stripe.state.calls[0]).toMatchObject({ now: 5, next: 5 });
    expect(stripe.state.quantity).toBe(5);
  });

  it('keeps the quantity until renewal on a decrease, and never goes under the included seats', async () => {
    const { sync, stripe, add, remove } = await setup();
    await add('b', 'c', 'd', 'e');
    await sync.run('alice', 'membership');
    await remove('b', 'c');
    expect(await sync.run('alice', 'membership')).toMatchObject({
      kind: 'applied',
      after: { now: 5, next: 3 },
    });
    expect([stripe.state.quantity, stripe.state.next]).toEqual([5, 3]);
    await remove('d', 'e');
    // 1 person, 3 included: the next period bills 3, already scheduled.
    expect((await sync.run('alice', 'membership')).kind).toBe('already_applied');
    // A person back before renewal costs nothing more this period: only the next period moves.
    await add('f', 'g', 'h');
    expect(await sync.run('alice', 'membership')).toMatchObject({ after: { now: 5, next: 4 } });
    expect(stripe.state.calls.map((c) => c.now)).toEqual([5, 5, 5]);
  });

  it('refuses a computation older than the generation Stripe carries (a stale quantity never wins)', async () => {
    const { sync, stripe, add } = await setup();
    await add('b', 'c', 'd', 'e');
    stripe.state.metadata[SEAT_GENERATION_METADATA] = '100000';
    expect(await sync.run('alice', 'timer')).toMatchObject({ kind: 'stale', newer: 100000 });
    expect(stripe.state.calls).toHaveLength(0);
  });

  it('lets one sync at a time talk to Stripe: a concurrent one is deferred, never lost', async () => {
    const { sync, stripe, add } = await setup();
    await add('b', 'c', 'd', 'e');
    let open: () => void = () => undefined;
    stripe.state.block = new Promise<void>((resolve) => {
      open = resolve;
    });
    const first = sync.run('alice', 'membership');
    await new Promise((resolve) => setTimeout(resolve, 20));
    await add('f');
    expect(await sync.run('alice', 'membership')).toMatchObject({ kind: 'deferred', why: 'busy' });
    open();
    expect((await first).kind).toBe('applied');
    expect(await sync.run('alice', 'membership')).toMatchObject({ kind: 'applied', after: { now: 6 } });
  });

  it('changes nothing while payment is in trouble, and applies once it recovers', async () => {
    const { sync, stripe, add } = await setup();
    await add('b', 'c', 'd', 'e');
    for (const status of ['past_due', 'unpaid', 'paused'] as const) {
      stripe.state.status = status;
      expect(await sync.run('alice', 'membership')).toEqual({ kind: 'held', status });
    }
    expect(stripe.state.calls).toHaveLength(0);
    stripe.state.status = 'active';
    expect(await sync.run('alice', 'recovery')).toMatchObject({ kind: 'applied', after: { now: 5 } });
  });

  it('delays updates past the hourly budget instead of dropping them', async () => {
    const { sync, clock, add } = await setup({ maxUpdatesPerHour: 2, leaseSeconds: 60 });
    await add('b', 'c');
    expect((await sync.run('alice', 'membership')).kind).toBe('in_sync');
    await add('d');
    expect((await sync.run('alice', 'membership')).kind).toBe('applied');
    await add('e');
    expect((await sync.run('alice', 'membership')).kind).toBe('applied');
    await add('f');
    const deferred = await sync.run('alice', 'membership');
    expect(deferred).toMatchObject({ kind: 'deferred', why: 'budget' });
    clock.set('2026-11-15T13:00:01.000Z');
    expect(await sync.run('alice', 'membership')).toMatchObject({ kind: 'applied', after: { now: 6 } });
  });

  it('does nothing for plans not billed per seat', async () => {
    const { sync, services } = await setup();
    await givenSubscription(services, 'alice', {
      plan: 'pro',
      status: 'active',
      stripeSubscriptionId: 'sub_x',
    });
    expect((await sync.run('alice', 'membership')).kind).toBe('not_per_seat');
  });

  it('survives a failure at any storage call: the next sync after the lease finishes, once', async () => {
    let crashed = 0;
    for (const mode of ['before', 'after'] as const) {
      for (let call = 1; ; call++) {
        let faults: ReturnType<typeof faultyTables>['faults'] | undefined;
        const run = await setup(OPTIONS, (t) => {
          const wrapped = faultyTables(t);
          faults = wrapped.faults;
          return wrapped.tables;
        });
        await run.add('b', 'c', 'd', 'e');
        if (!faults) throw new Error('no faults');
        faults.failCall(call, mode);
        const failed = await run.sync.run('alice', 'membership').then(
          () => false,
          () => true,
        );
        faults.failCall(0, mode);
        // A lease left by the crash expires; the next sync completes the work.
        run.clock.set('2026-11-15T12:05:00.000Z');
        await run.sync.run('alice', 'membership');
        expect(run.stripe.state.quantity).toBe(5);
        expect(run.stripe.state.calls.length).toBeLessThanOrEqual(1);
        const row = await run.raw.billing.get('alice', SEAT_SYNC_ROW);
        expect(row?.props.target).toBe(5);
        expect(row?.props.leaseId).toBeUndefined();
        if (!failed) break;
        crashed++;
      }
    }
    // Claim, Stripe, release: each storage call of both writes and their reads failed in turn.
    expect(crashed).toBeGreaterThanOrEqual(8);
  });
  it('the sweep finds drift in Stripe, repairs it through the same sync, and audits it', async () => {
    const { sync, stripe, add, raw } = await setup();
    await add('b', 'c', 'd', 'e');
    await sync.run('alice', 'membership');
    stripe.state.quantity = 2; // someone changed it in the Dashboard
    const report = await sync.sweep({ trigger: 'timer' });
    expect(report).toMatchObject({
      examined: 1,
      outcomes: { applied: 1 },
      repaired: [{ ownerId: 'alice', before: { now: 2 }, after: { now: 5, next: 5 } }],
      failures: [],
    });
    expect(stripe.state.quantity).toBe(5);
    const audits = await raw.billing.list('alice', { prefix: 'audit|' });
    const repair = audits.find((row) => row.props.causeType === 'timer');
    expect(repair?.props).toMatchObject({ kind: 'seats_synced', causeKind: 'seat_sync', actor: 'seat_sync' });
    expect((await sync.sweep({ trigger: 'timer' })).outcomes.in_sync).toBe(1);
  });
});
