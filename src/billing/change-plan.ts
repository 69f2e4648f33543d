import { type Catalog, INTERVALS, type Interval, PLAN_NAMES, type PlanName } from './catalog.js';
import { conflict, unavailable } from './errors.js';
import { detectTier } from './lifecycle.js';
import type { PriceInfo, SubscriptionInfo } from './payments.js';
import { quantityFor } from './seats.js';
import type { SubscriptionState } from './subscription.js';

/**
 * What a change to the owner's subscription will do, decided once: the real change
 * (`billing-actions.ts`) carries the plan out in Stripe, and the preview (`change-preview.ts`) describes
 * the same plan without carrying it out. Pure: both gather the inputs, then ask here, so a preview can
 * never promise what the change would not do.
 */

/** A plan and interval to move to, or ending the subscription at period end. */
export type ChangeRequest =
  | { readonly kind: 'plan'; readonly plan: PlanName; readonly interval: Interval }
  | { readonly kind: 'cancel' };

export interface ChangeTarget {
  readonly plan: PlanName;
  readonly interval: Interval;
}

export type PlannedChange =
  /**
   * Upgrades take effect now: the new price and quantity replace the current ones, the prorated difference
   * invoiced at once (`PaymentsGateway.changePriceNow`; `previewPriceChangeNow` shows that invoice).
   */
  | {
      readonly kind: 'upgrade';
      readonly target: ChangeTarget;
      readonly priceId: string;
      readonly quantity: number;
      /** A pending downgrade is dropped first (its schedule released). */
      readonly releaseScheduleId: string | null;
      readonly effectiveAt: Date;
    }
  /** The current price chosen again while a downgrade waits: only the pending change is dropped. */
  | {
      readonly kind: 'drop_scheduled_change';
      readonly target: ChangeTarget;
      readonly releaseScheduleId: string | null;
      readonly effectiveAt: Date;
    }
  /** Downgrades wait for the period end (a schedule phase); nothing is billed or credited now. */
  | {
      readonly kind: 'downgrade';
      readonly target: ChangeTarget;
      readonly priceId: string;
      readonly quantity: number;
      readonly effectiveAt: Date;
    }
  /** Cancellation at period end: access stays until then; a pending downgrade is dropped. */
  | { readonly kind: 'cancel'; readonly releaseScheduleId: string | null; readonly effectiveAt: Date };

/** Plans rank by what they give; for one plan, yearly ranks above monthly (it is paid up front). */
export function rank(plan: PlanName, interval: Interval): number {
  return PLAN_NAMES.indexOf(plan) * INTERVALS.length + INTERVALS.indexOf(interval);
}

/** A plan change (not a cancellation) and what it plans. */
export type PlanChangeRequest = Extract<ChangeRequest, { kind: 'plan' }>;
export type PlannedPlanChange = Exclude<PlannedChange, { kind: 'cancel' }>;
export type PlannedCancel = Extract<PlannedChange, { kind: 'cancel' }>;

/**
 * The plan for moving the live subscription `live` to another plan or interval.
 * @param price the live Stripe price of the target.
 * @param billable the people the owner pays for now (`seats.ts`): a per-seat target bills them.
 * @param now when the change is asked for: upgrades take effect then.
 * @throws BillingError `no_change` (409), `subscription_malformed` or `price_unmapped` (503).
 */
export function planPlanChange(input: {
  readonly request: PlanChangeRequest;
  readonly live: SubscriptionInfo;
  readonly price: PriceInfo;
  readonly billable: number;
  readonly catalog: Catalog;
  readonly now: Date;
}): PlannedPlanChange {
  const { request, live, price, billable, catalog, now } = input;
  const item = live.items[0];
  if (!item) throw unavailable('subscription_malformed', `Subscription ${live.id} has no items.`);
  const { plan, interval } = request;
  if (item.price.id === price.id && !live.scheduledPhase) {
    throw conflict('no_change', `The subscription is already on ${plan} ${interval}.`);
  }
  const current = detectTier(item.price, catalog);
  if (!current) throw unavailable('price_unmapped', `Price ${item.price.id} matches no plan.`);
  const target = { plan, interval };
  if (item.price.id === price.id) {
    // Choosing the current price again just drops a pending downgrade.
    return { kind: 'drop_scheduled_change', target, releaseScheduleId: live.scheduleId, effectiveAt: now };
  }
  // The same computation as the seat sync: Pro -> Team bills the people in the organizations now.
  const quantity = quantityFor(catalog[plan], billable);
  if (rank(plan, interval) > rank(current.plan, current.interval)) {
    return {
      kind: 'upgrade',
      target,
      priceId: price.id,
      quantity,
      releaseScheduleId: live.scheduleId,
      effectiveAt: now,
    };
  }
  return { kind: 'downgrade', target, priceId: price.id, quantity, effectiveAt: live.currentPeriodEnd };
}

/** The plan for cancelling `live` at the period end. */
export function planCancel(live: SubscriptionInfo): PlannedCancel {
  // A subscription managed by a schedule cannot be set to cancel; cancelling drops the pending change.
  return { kind: 'cancel', releaseScheduleId: live.scheduleId, effectiveAt: live.currentPeriodEnd };
}

/**
 * Our subscription state once the plan has taken effect, as the sync will derive it from Stripe then:
 * the target plan, interval and quantity with no change pending, or (cancelled) ended.
 */
export function stateAfter(stored: SubscriptionState, change: PlannedChange): SubscriptionState {
  const { scheduledPlan: _p, scheduledInterval: _i, scheduledSeats: _s, scheduledAt: _a, ...rest } = stored;
  const at = change.effectiveAt.toISOString();
  switch (change.kind) {
    case 'cancel':
      return { ...rest, status: 'canceled', stripeStatus: 'canceled', updatedAt: at };
    case 'drop_scheduled_change':
      return { ...rest, updatedAt: at };
    case 'upgrade':
    case 'downgrade':
      // A price change leaves `cancel_at_period_end` as it was, in Stripe and so here.
      return {
        ...rest,
        plan: change.target.plan,
        interval: change.target.interval,
        seats: change.quantity,
        updatedAt: at,
      };
  }
}
