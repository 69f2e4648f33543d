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
