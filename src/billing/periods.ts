import { accessLevelOf } from './access/levels.js';
import { compactInstant } from './owner/keys.js';
import type { SubscriptionState } from './subscription.js';

/** A usage window. Counters are keyed by `key`, so a new window starts at zero without any reset. */
export interface UsagePeriod {
  readonly key: string;
  readonly start: Date;
  /** Exclusive. */
  readonly end: Date;
}

/** The calendar month in UTC that contains `at`: the window for owners without a paid period. */
export function calendarMonth(at: Date): UsagePeriod {
  const start = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1));
  const end = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1));
  return { key: start.toISOString().slice(0, 7), start, end };
}

/**
 * `anchor` plus `months` calendar months (negative too), in UTC, keeping the time of day, with the day
 * clamped to the month's last day as Stripe does: an anchor on Jan 31 gives Feb 28 (29), then Mar 31.
 * Always computed from the anchor, never from an earlier (clamped) boundary, or Mar would get the 28th.
 */
export function addMonthsClamped(anchor: Date, months: number): Date {
  const target = new Date(Date.UTC(anchor.getUTCFullYear(), anchor.getUTCMonth() + months, 1));
  const year = target.getUTCFullYear();
  const month = target.getUTCMonth();
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  return new Date(
    Date.UTC(
      year,
      month,
      Math.min(anchor.getUTCDate(), lastDay),
      anchor.getUTCHours(),
      anchor.getUTCMinutes(),
      anchor.getUTCSeconds(),
      anchor.getUTCMilliseconds(),
    ),
  );
}

/** The month stepped from `anchor` that contains `at`: `[anchor + k months, anchor + k + 1 months)`. */
export function anchoredMonth(at: Date, anchor: Date): { readonly start: Date; readonly end: Date } {
  // The calendar distance is right or one off (day and time of day); adjust against the real boundaries.
  let k = (at.getUTCFullYear() - anchor.getUTCFullYear()) * 12 + (at.getUTCMonth() - anchor.getUTCMonth());
  while (addMonthsClamped(anchor, k).getTime() > at.getTime()) k--;
  while (addMonthsClamped(anchor, k + 1).getTime() <= at.getTime()) k++;
  return { start: addMonthsClamped(anchor, k), end: addMonthsClamped(anchor, k + 1) };
}

const windowOf = (start: Date, end: Date): UsagePeriod => ({ key: compactInstant(start), start, end });

/**
 * The usage window at `at` for an owner's subscription state: the allowance of a meter is per window.
 *
 * - No subscription, or one that gives no paid access (`accessLevelOf` says `free`: canceled,
 *   incomplete), or one that ended at its period end: the calendar month in UTC.
 * - Otherwise months stepped from the billing cycle anchor (the period start on rows written before the
 *   anchor was stored), clamped to the month's end like Stripe, time of day kept:
 *   - inside the stored period of a monthly plan, the stored period itself (Stripe's is authoritative);
 *   - inside the stored period of a yearly plan, the anchored month that contains `at`, clipped to the
 *     period: the allowance is monthly, so a year has twelve of them;
 *   - past the stored period end (the renewal event is late), the anchored month, starting no earlier
 *     than the stored end. Its key is then the key of the renewed period, which starts at the old end,
 *     so when the renewal arrives consumption goes on in the same counter: never a fresh allowance
 *     between a period's end and its renewal event (issue 8, defect 5).
 *
 * Keys are the window start as `YYYYMMDDTHHMMSS` (UTC), or `YYYY-MM` for a calendar month.
 */
export function currentPeriod(at: Date, subscription: SubscriptionState | undefined): UsagePeriod {
  if (!subscription || accessLevelOf(subscription.status) === 'free') return calendarMonth(at);
  const start = new Date(subscription.currentPeriodStart);
  const end = new Date(subscription.currentPeriodEnd);
  // A subscription set to cancel is over at its period end, even before Stripe's deletion event says so:
  // a fresh paid window then would be a second allowance on top of the free plan's calendar month.
  if (subscription.cancelAtPeriodEnd && at.getTime() >= end.getTime()) return calendarMonth(at);
  const inside = start.getTime() <= at.getTime() && at.getTime() < end.getTime();
  if (inside && subscription.interval === 'monthly') return windowOf(start, end);

  const month = anchoredMonth(
    at,
    new Date(subscription.billingCycleAnchor ?? subscription.currentPeriodStart),
  );
  if (inside) {
    return windowOf(
      new Date(Math.max(month.start.getTime(), start.getTime())),
      new Date(Math.min(month.end.getTime(), end.getTime())),
    );
  }
  if (at.getTime() >= end.getTime()) {
    return windowOf(new Date(Math.max(month.start.getTime(), end.getTime())), month.end);
  }
  // Before the stored period (a clock behind Stripe's): the anchored month, ending where the period starts.
  return windowOf(month.start, new Date(Math.min(month.end.getTime(), start.getTime())));
}

/** The UTC calendar day of an instant, `YYYY-MM-DD`: how the rollover index groups periods by their end. */
export function utcDay(at: Date): string {
  return at.toISOString().slice(0, 10);
}

/** Period keys are `YYYY-MM` (calendar month) or `YYYYMMDDTHHMMSS` (a billing period's start, UTC). */
export const PERIOD_KEY_PATTERN = /^(\d{4}-\d{2}|\d{8}T\d{6})$/;

/**
 * What a period key alone says about its bounds: a calendar month is complete; a billing-period key
 * gives only its start (the end lives on the counter row). `undefined` for a key of neither form.
 */
export function boundsFromKey(key: string): { readonly start: Date; readonly end: Date | null } | undefined {
  const month = /^(\d{4})-(\d{2})$/.exec(key);
  if (month) {
    const start = new Date(Date.UTC(Number(month[1]), Number(month[2]) - 1, 1));
    return { start, end: new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + 1, 1)) };
  }
  const billing = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})$/.exec(key);
  if (billing) {
    const [, y, mo, d, h, mi, s] = billing.map(Number);
    return { start: new Date(Date.UTC(y ?? 0, (mo ?? 1) - 1, d, h, mi, s)), end: null };
  }
  return undefined;
}
