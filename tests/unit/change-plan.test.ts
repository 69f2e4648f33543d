import { describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { planCancel, planPlanChange, stateAfter } from '../../src/billing/change-plan.js';
import { BillingError } from '../../src/billing/errors.js';
import { stateFromSubscription } from '../../src/billing/lifecycle.js';
import { priceInfo, subscriptionInfo } from '../support/stripe-fixtures.js';

/** The one decision a plan change, a cancellation and their previews all carry out. */

const key = (plan: 'pro' | 'team', interval: 'monthly' | 'yearly') =>
  catalog[plan].prices?.[interval].lookupKey ?? '';
const teamMonthly = priceInfo({ id: 'price_team_m', lookupKey: key('team', 'monthly'), unitAmount: 1_500 });
const proYearly = priceInfo({ id: 'price_pro_y', lookupKey: key('pro', 'yearly'), interval: 'year' });
const now = new Date('2026-11-10T00:00:00Z');
const live = subscriptionInfo();
const onTeam = subscriptionInfo({ items: [{ id: 'si_1', price: teamMonthly, quantity: 4 }] });
const plan = (over: Partial<Parameters<typeof planPlanChange>[0]>) =>
  planPlanChange({
    request: { kind: 'plan', plan: 'team', interval: 'monthly' },
    live,
    price: teamMonthly,
    billable: 2,
    catalog,
    now,
    ...over,
  });

describe('planPlanChange and planCancel', () => {
  it('upgrades now, billing max(included seats, people) on a per-seat plan', () => {
    expect(plan({})).toEqual({
      kind: 'upgrade',
      target: { plan: 'team', interval: 'monthly' },
      priceId: 'price_team_m',
      quantity: catalog.team.limits.seats,
      releaseScheduleId: null,
      effectiveAt: now,
    });
    expect(plan({ billable: 7 })).toMatchObject({ kind: 'upgrade', quantity: 7 });
  });

  it('ranks yearly above monthly: Pro monthly -> Pro yearly is an upgrade, quantity 1', () => {
    expect(
      plan({ request: { kind: 'plan', plan: 'pro', interval: 'yearly' }, price: proYearly, billable: 9 }),
    ).toMatchObject({ kind: 'upgrade', quantity: 1 });
  });

  it('schedules a downgrade for the period end, nothing due', () => {
    expect(
      plan({ request: { kind: 'plan', plan: 'pro', interval: 'monthly' }, live: onTeam, price: priceInfo() }),
    ).toEqual({
      kind: 'downgrade',
      target: { plan: 'pro', interval: 'monthly' },
      priceId: 'price_1',
      quantity: 1,
      effectiveAt: live.currentPeriodEnd,
    });
  });

  it('drops a pending downgrade when the current price is chosen again, and refuses no change', () => {
    const pending = subscriptionInfo({
      items: [{ id: 'si_1', price: teamMonthly, quantity: 4 }],
      scheduleId: 'sub_sched_1',
      scheduledPhase: {
        scheduleId: 'sub_sched_1',
        startsAt: live.currentPeriodEnd,
        price: priceInfo(),
        quantity: 1,
      },
    });
    expect(plan({ live: pending })).toEqual({
      kind: 'drop_scheduled_change',
      target: { plan: 'team', interval: 'monthly' },
      releaseScheduleId: 'sub_sched_1',
      effectiveAt: now,
    });
    expect(() => plan({ live: onTeam })).toThrow(BillingError);
    expect(() => plan({ live: onTeam })).toThrow(
      expect.objectContaining({ kind: 'conflict', code: 'no_change' }),
    );
  });

  it('cancels at the period end, releasing a pending change', () => {
    expect(planCancel(subscriptionInfo({ scheduleId: 'sub_sched_2' }))).toEqual({
      kind: 'cancel',
      releaseScheduleId: 'sub_sched_2',
      effectiveAt: live.currentPeriodEnd,
    });
  });

  it('refuses a subscription without items or on a price no plan has', () => {
    expect(() => plan({ live: subscriptionInfo({ items: [] }) })).toThrow(
      expect.objectContaining({ code: 'subscription_malformed' }),
    );
    const foreign = subscriptionInfo({
      items: [{ id: 'si_1', price: priceInfo({ lookupKey: 'gold', unitAmount: 1 }), quantity: 1 }],
    });
    expect(() => plan({ live: foreign })).toThrow(expect.objectContaining({ code: 'price_unmapped' }));
  });
});

describe('stateAfter: the state the sync will derive once the plan is in force', () => {
  const dunning = { graceAfterAttempts: 2, lockAfterAttempts: 4 };
  const stored = stateFromSubscription(live, catalog, dunning, now);

  it('matches the sync reading Stripe after an upgrade (plan, interval, seats)', () => {
    const change = plan({ billable: 5 });
    const synced = stateFromSubscription(
      subscriptionInfo({ items: [{ id: 'si_1', price: teamMonthly, quantity: 5 }] }),
      catalog,
      dunning,
      now,
    );
    const { updatedAt: _a, ...expected } = synced;
    const { updatedAt: _b, ...projected } = stateAfter(stored, change);
    expect(projected).toEqual(expected);
  });

  it('ends a cancelled subscription, dropping a pending change', () => {
    const withPending = { ...stored, scheduledPlan: 'free' as const, scheduledAt: now.toISOString() };
    const after = stateAfter(withPending, planCancel(live));
    expect(after).toMatchObject({ status: 'canceled', stripeStatus: 'canceled', plan: 'pro' });
    expect(after.scheduledPlan).toBeUndefined();
  });
});
