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
 * The window that applies at `at`: the subscription's billing period while `at` falls inside it,
 * otherwise the calendar month (a lapsed or free owner).
 */
export function currentPeriod(at: Date, subscription: SubscriptionState | undefined): UsagePeriod {
  if (subscription) {
    const start = new Date(subscription.currentPeriodStart);
    const end = new Date(subscription.currentPeriodEnd);
    if (start <= at && at < end) {
      return { key: subscription.currentPeriodStart.slice(0, 19).replace(/[-:]/g, ''), start, end };
    }
  }
  return calendarMonth(at);
}
