import { describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { EventShapeError, refFromStripeEvent } from '../../src/billing/event-ref.js';
import {
  currentSubscription,
  detectTier,
  duplicateLive,
  endedState,
  internalStatus,
  isOurs,
  stateFromSubscription,
  UnmappedPriceError,
} from '../../src/billing/lifecycle.js';
import { priceInfo, subscriptionInfo } from '../support/stripe-fixtures.js';

const pro = catalog.pro.prices;
if (!pro) throw new Error('pro must be priced');

const price = priceInfo;
const subscription = subscriptionInfo;

const dunning = { graceAfterAttempts: 2, lockAfterAttempts: 4 };

describe('tier detection, in its documented order', () => {
  it('uses the lookup key first', () => {
    expect(detectTier(price(), catalog)).toEqual({ plan: 'pro', interval: 'monthly' });
    expect(detectTier(price({ lookupKey: pro.yearly.lookupKey, interval: 'year' }), catalog)).toEqual({
      plan: 'pro',
      interval: 'yearly',
    });
  });

  it('falls back to product metadata when the price has no lookup key', () => {
    const renamed = price({ lookupKey: null, unitAmount: 9_999, productMetadata: { plan: 'team' } });
    expect(detectTier(renamed, catalog)).toEqual({ plan: 'team', interval: 'monthly' });
  });

  it('falls back to the amount and interval signature when neither is there', () => {
    const team = catalog.team.prices?.yearly;
    const bare = price({ lookupKey: null, unitAmount: team?.unitAmount ?? 0, interval: 'year' });
    expect(detectTier(bare, catalog)).toEqual({ plan: 'team', interval: 'yearly' });
  });

  it('maps nothing it cannot recognise, and the state refuses it loudly', () => {
    const unknown = price({ lookupKey: 'legacy_gold', unitAmount: 12_345 });
    expect(detectTier(unknown, catalog)).toBeUndefined();
    const sub = subscription({ items: [{ id: 'si', price: unknown, quantity: 1 }] });
    expect(() => stateFromSubscription(sub, catalog, dunning, new Date())).toThrow(UnmappedPriceError);
  });
});

describe('status mapping', () => {
  it.each([
    ['active', 0, 'active'],
    ['trialing', 0, 'trialing'],
    ['past_due', 1, 'retrying'],
    ['past_due', 2, 'grace'],
    ['past_due', 3, 'grace'],
    ['past_due', 4, 'past_due'],
    ['unpaid', 4, 'unpaid'],
    ['paused', 0, 'paused'],
    ['incomplete', 1, 'incomplete'],
    ['incomplete_expired', 1, 'canceled'],
    ['canceled', 0, 'canceled'],
  ] as const)('Stripe %s with %i failed attempts is %s', (status, attempts, expected) => {
    expect(internalStatus(subscription({ status, latestInvoiceAttempts: attempts }), dunning)).toBe(expected);
  });
});

describe('which subscription governs', () => {
  it('prefers a live subscription over an ended newer one, then the newest', () => {
    const old = subscription({ id: 'sub_old', status: 'active', created: new Date('2026-01-01') });
    const ended = subscription({ id: 'sub_ended', status: 'canceled', created: new Date('2026-06-01') });
    expect(currentSubscription([ended, old])?.id).toBe('sub_old');
    const newer = subscription({ id: 'sub_new', status: 'canceled', created: new Date('2026-07-01') });
    expect(currentSubscription([ended, newer])?.id).toBe('sub_new');
    expect(currentSubscription([])).toBeUndefined();
  });

  it('keeps the live subscription paid first when there are two, and names the others', () => {
    const first = subscription({ id: 'sub_b', status: 'active', created: new Date('2026-05-01T10:00:00Z') });
    const second = subscription({ id: 'sub_a', status: 'active', created: new Date('2026-05-01T10:05:00Z') });
    const ended = subscription({ id: 'sub_0', status: 'canceled', created: new Date('2026-01-01') });
    expect(duplicateLive([second, ended, first])).toEqual({ keep: first, extra: [second] });
    // Paid in the same second: the smaller id wins, so every reader agrees.
    const twin = subscription({ id: 'sub_a', status: 'active', created: first.created });
    expect(duplicateLive([first, twin]).keep?.id).toBe('sub_a');
    expect(duplicateLive([ended])).toEqual({ keep: undefined, extra: [] });
  });

  it('treats a subscription on a price that is no plan of ours (a weekly price) as not ours', () => {
    const weekly = subscription({
      id: 'sub_w',
      items: [
        { id: 'si_w', price: price({ lookupKey: null, interval: 'week', unitAmount: 123 }), quantity: 1 },
      ],
    });
    expect(isOurs(weekly, catalog)).toBe(false);
    expect(isOurs(subscription(), catalog)).toBe(true);
    expect(isOurs(subscription({ items: [] }), catalog)).toBe(false);
  });

  it('ends a held subscription Stripe no longer has: canceled, nothing scheduled', () => {
    const held = stateFromSubscription(
      subscription({
        scheduledPhase: {
          scheduleId: 'sub_sched_1',
          startsAt: new Date('2026-12-01T00:00:00Z'),
          price: price(),
          quantity: 1,
        },
      }),
      catalog,
      dunning,
      new Date('2026-11-10T00:00:00Z'),
    );
    const ended = endedState(held, new Date('2026-11-11T00:00:00Z'));
    expect(ended).toMatchObject({ status: 'canceled', stripeStatus: 'canceled', cancelAtPeriodEnd: false });
    expect(ended.scheduledPlan).toBeUndefined();
    expect(ended.plan).toBe(held.plan);
  });

  it('shows a scheduled downgrade in the state', () => {
    const sub = subscription({
      items: [{ id: 'si', price: price({ lookupKey: 'team_monthly' }), quantity: 4 }],
      scheduledPhase: {
        scheduleId: 'sub_sched_1',
        startsAt: new Date('2026-12-01T00:00:00Z'),
        price: price(),
        quantity: 1,
      },
    });
    const state = stateFromSubscription(sub, catalog, dunning, new Date('2026-11-10T00:00:00Z'));
    expect(state).toMatchObject({
      plan: 'team',
      seats: 4,
      scheduledPlan: 'pro',
      scheduledInterval: 'monthly',
    });
  });
});

describe('Stripe event parsing', () => {
  const version = '2026-10-28.endive';
  const event = (type: string, object: Record<string, unknown>, overrides: Record<string, unknown> = {}) => ({
    id: 'evt_1',
    object: 'event',
    api_version: version,
    created: 1_790_000_000,
    livemode: false,
    type,
    data: { object },
    ...overrides,
  });

  it('reads only the ids from each handled type', () => {
    expect(
      refFromStripeEvent(
        event('invoice.paid', { id: 'in_1', object: 'invoice', customer: 'cus_1' }),
        version,
      ),
    ).toEqual({
      kind: 'enqueue',
      ref: {
        v: 2,
        eventId: 'evt_1',
        type: 'invoice.paid',
        objectId: 'in_1',
        customerId: 'cus_1',
        attempt: 0,
        created: 1_790_000_000,
      },
    });
    expect(
      refFromStripeEvent(
        event('customer.subscription.updated', {
          id: 'sub_1',
          object: 'subscription',
          customer: { id: 'cus_1', object: 'customer' },
        }),
        version,
      ),
    ).toMatchObject({ kind: 'enqueue', ref: { objectId: 'sub_1', customerId: 'cus_1' } });
    // The body's claims (paid, pack) are not carried: the processor re-reads the session.
    expect(
      refFromStripeEvent(
        event('checkout.session.completed', {
          id: 'cs_1',
          object: 'checkout.session',
          customer: 'cus_1',
          mode: 'payment',
          payment_status: 'paid',
          metadata: { pack: 'credits_5k' },
        }),
        version,
      ),
    ).toEqual({
      kind: 'enqueue',
      ref: {
        v: 2,
        eventId: 'evt_1',
        type: 'checkout.session.completed',
        objectId: 'cs_1',
        customerId: 'cus_1',
        attempt: 0,
        created: 1_790_000_000,
      },
    });
    // A dispute has no customer: the processor finds it through the charge.
    expect(
      refFromStripeEvent(
        event('charge.dispute.created', { id: 'dp_1', object: 'dispute', charge: 'ch_1' }),
        version,
      ),
    ).toMatchObject({ kind: 'enqueue', ref: { objectId: 'dp_1', customerId: null } });
  });

  it('ignores types it does not act on, and checkouts without a customer (Payment Links, guests)', () => {
    expect(
      refFromStripeEvent(event('customer.created', { id: 'cus_1', object: 'customer' }), version),
    ).toEqual({ kind: 'ignored', eventId: 'evt_1', type: 'customer.created', why: 'not a type we act on' });
    expect(
      refFromStripeEvent(
        event('checkout.session.completed', { id: 'cs_1', object: 'checkout.session', customer: null }),
        version,
      ),
    ).toMatchObject({ kind: 'ignored', type: 'checkout.session.completed' });
  });

  it('refuses another API version, a malformed envelope and a handled type with a bad body', () => {
    const wrongVersion = () =>
      refFromStripeEvent(
        event(
          'invoice.paid',
          { id: 'in_1', object: 'invoice', customer: 'cus_1' },
          { api_version: '2020-08-27' },
        ),
        version,
      );
    expect(wrongVersion).toThrow(EventShapeError);
    expect(wrongVersion).toThrow(expect.objectContaining({ code: 'api_version_unexpected' }));
    expect(() => refFromStripeEvent({ id: 'nope' }, version)).toThrow(EventShapeError);
    expect(() =>
      refFromStripeEvent(event('invoice.paid', { object: 'invoice', customer: 'cus_1' }), version),
    ).toThrow(expect.objectContaining({ code: 'event_invalid' }));
  });
});
