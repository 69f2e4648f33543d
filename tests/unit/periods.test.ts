import { describe, expect, it } from 'vitest';
import {
  addMonthsClamped,
  anchoredMonth,
  boundsFromKey,
  calendarMonth,
  currentPeriod,
  PERIOD_KEY_PATTERN,
  type UsagePeriod,
} from '../../src/billing/periods.js';
import { SUBSCRIPTION_STATUSES, type SubscriptionState } from '../../src/billing/subscription.js';

const iso = (d: Date) => d.toISOString();
const bounds = (p: UsagePeriod) => [p.key, iso(p.start), iso(p.end)];

function subscription(overrides: Partial<SubscriptionState>): SubscriptionState {
  return {
    plan: 'pro',
    interval: 'monthly',
    status: 'active',
    seats: 1,
    currentPeriodStart: '2026-01-31T10:20:30.000Z',
    currentPeriodEnd: '2026-02-28T10:20:30.000Z',
    billingCycleAnchor: '2026-01-31T10:20:30.000Z',
    cancelAtPeriodEnd: false,
    updatedAt: '2026-01-31T10:20:30.000Z',
    ...overrides,
  };
}

describe('addMonthsClamped: Stripe-like monthly boundaries', () => {
  it('clamps an anchor on the 31st to short months and returns to the 31st, keeping the time of day', () => {
    const anchor = new Date('2026-01-31T10:20:30.456Z');
    expect([1, 2, 3, 4, 11, 12, 13].map((n) => iso(addMonthsClamped(anchor, n)))).toEqual([
      '2026-02-28T10:20:30.456Z',
      '2026-03-31T10:20:30.456Z',
      '2026-04-30T10:20:30.456Z',
      '2026-05-31T10:20:30.456Z',
      '2026-12-31T10:20:30.456Z',
      '2027-01-31T10:20:30.456Z',
      '2027-02-28T10:20:30.456Z',
    ]);
    expect(iso(addMonthsClamped(anchor, -2))).toBe('2025-11-30T10:20:30.456Z');
  });

  it('gives Feb 29 in a leap year, and an anchor on Feb 29 the 29th again after February', () => {
    expect(iso(addMonthsClamped(new Date('2028-01-30T00:00:00Z'), 1))).toBe('2028-02-29T00:00:00.000Z');
    const leapDay = new Date('2028-02-29T23:59:59Z');
    expect([1, 12, 48].map((n) => iso(addMonthsClamped(leapDay, n)))).toEqual([
      '2028-03-29T23:59:59.000Z',
      '2029-02-28T23:59:59.000Z',
      '2032-02-29T23:59:59.000Z',
    ]);
  });

  it('finds the anchored month of an instant, a boundary belonging to the month it starts', () => {
    const anchor = new Date('2026-01-31T10:20:30Z');
    const month = (at: string) => {
      const m = anchoredMonth(new Date(at), anchor);
      return [iso(m.start), iso(m.end)];
    };
    expect(month('2026-03-31T10:20:29.999Z')).toEqual([
      '2026-02-28T10:20:30.000Z',
      '2026-03-31T10:20:30.000Z',
    ]);
    expect(month('2026-03-31T10:20:30Z')).toEqual(['2026-03-31T10:20:30.000Z', '2026-04-30T10:20:30.000Z']);
    expect(month('2026-03-01T00:00:00Z')).toEqual(['2026-02-28T10:20:30.000Z', '2026-03-31T10:20:30.000Z']);
    expect(month('2025-12-31T10:20:29Z')).toEqual(['2025-11-30T10:20:30.000Z', '2025-12-31T10:20:30.000Z']);
  });
});

describe('currentPeriod: the usage window', () => {
  it('is the stored period exactly inside a monthly plan’s period, keyed by its start', () => {
    const sub = subscription({});
    for (const at of ['2026-01-31T10:20:30Z', '2026-02-14T00:00:00Z', '2026-02-28T10:20:29Z']) {
      expect(bounds(currentPeriod(new Date(at), sub))).toEqual([
        '20260131T102030',
        '2026-01-31T10:20:30.000Z',
        '2026-02-28T10:20:30.000Z',
      ]);
    }
    // Even a period off the anchor's grid (a trial, a stub before the anchor): Stripe's is authoritative.
    const trial = subscription({
      status: 'trialing',
      currentPeriodStart: '2026-11-03T09:03:07.000Z',
      currentPeriodEnd: '2026-11-17T00:00:00.000Z',
      billingCycleAnchor: '2026-11-17T00:00:00.000Z',
    });
    expect(bounds(currentPeriod(new Date('2026-11-10T00:00:00Z'), trial))).toEqual([
      '20261103T090307',
      '2026-11-03T09:03:07.000Z',
      '2026-11-17T00:00:00.000Z',
    ]);
  });

  it('continues past a monthly period end in anchored months whose keys are the renewed periods’ keys', () => {
    const sub = subscription({});
    // The renewal event is late: the window starts at the stored end and ends where Stripe's next will.
    const late = currentPeriod(new Date('2026-03-05T00:00:00Z'), sub);
    expect(bounds(late)).toEqual(['20260228T102030', '2026-02-28T10:20:30.000Z', '2026-03-31T10:20:30.000Z']);
    const renewed = subscription({
      currentPeriodStart: '2026-02-28T10:20:30.000Z',
      currentPeriodEnd: '2026-03-31T10:20:30.000Z',
    });
    expect(currentPeriod(new Date('2026-03-05T00:00:00Z'), renewed)).toEqual(late);
    // Still no renewal a month later: the next anchored month, back on the 31st.
    expect(bounds(currentPeriod(new Date('2026-04-02T00:00:00Z'), sub))).toEqual([
      '20260331T102030',
      '2026-03-31T10:20:30.000Z',
      '2026-04-30T10:20:30.000Z',
    ]);
    // At the stored end exactly, the continuation has begun.
    expect(currentPeriod(new Date('2026-02-28T10:20:30Z'), sub).key).toBe('20260228T102030');
  });

  it('starts the first window past the end at the stored end even when the anchor is off its grid', () => {
    // A row without the anchor stored, whose period start was clamped: the start stands in for the anchor.
    const sub = subscription({
      currentPeriodStart: '2026-02-28T10:20:30.000Z',
      currentPeriodEnd: '2026-03-31T10:20:30.000Z',
      billingCycleAnchor: undefined,
    });
    const late = currentPeriod(new Date('2026-04-01T00:00:00Z'), sub);
    expect(late.key).toBe('20260331T102030');
    expect(iso(late.start)).toBe('2026-03-31T10:20:30.000Z');
    expect(late.end.getTime()).toBeGreaterThan(new Date('2026-04-01T00:00:00Z').getTime());
  });

  it('gives a yearly plan twelve anchored months that tile the year with distinct keys', () => {
    const sub = subscription({
      interval: 'yearly',
      currentPeriodStart: '2026-01-31T10:20:30.000Z',
      currentPeriodEnd: '2027-01-31T10:20:30.000Z',
    });
    const windows: UsagePeriod[] = [];
    for (let at = new Date(sub.currentPeriodStart); at < new Date(sub.currentPeriodEnd); ) {
      const w = currentPeriod(at, sub);
      windows.push(w);
      // Any instant inside the window gives the same window.
      expect(currentPeriod(new Date(w.end.getTime() - 1), sub)).toEqual(w);
      at = w.end;
    }
    expect(windows).toHaveLength(12);
    expect(new Set(windows.map((w) => w.key)).size).toBe(12);
    expect(windows[0]?.key).toBe('20260131T102030');
    expect(windows.map((w) => iso(w.start).slice(0, 10))).toEqual([
      '2026-01-31',
      '2026-02-28',
      '2026-03-31',
      '2026-04-30',
      '2026-05-31',
      '2026-06-30',
      '2026-07-31',
      '2026-08-31',
      '2026-09-30',
      '2026-10-31',
      '2026-11-30',
      '2026-12-31',
    ]);
    windows.forEach((w, i) => {
      if (i > 0) expect(w.start).toEqual(windows[i - 1]?.end);
      expect(iso(w.start).slice(11)).toBe('10:20:30.000Z');
    });
    const total = windows.reduce((sum, w) => sum + (w.end.getTime() - w.start.getTime()), 0);
    expect(total).toBe(Date.parse(sub.currentPeriodEnd) - Date.parse(sub.currentPeriodStart));
  });

  it('gives a yearly plan anchored on Feb 29 the 29th where there is one, Feb 28 otherwise', () => {
    const sub = subscription({
      interval: 'yearly',
      currentPeriodStart: '2028-02-29T00:00:00.000Z',
      currentPeriodEnd: '2029-02-28T00:00:00.000Z',
      billingCycleAnchor: '2028-02-29T00:00:00.000Z',
    });
    expect(bounds(currentPeriod(new Date('2028-03-30T00:00:00Z'), sub))).toEqual([
      '20280329T000000',
      '2028-03-29T00:00:00.000Z',
      '2028-04-29T00:00:00.000Z',
    ]);
    expect(bounds(currentPeriod(new Date('2029-02-27T00:00:00Z'), sub))).toEqual([
      '20290129T000000',
      '2029-01-29T00:00:00.000Z',
      '2029-02-28T00:00:00.000Z',
    ]);
  });

  it('falls back to the period start as the anchor, and clips a yearly window to the stored period', () => {
    const sub = subscription({
      interval: 'yearly',
      currentPeriodStart: '2026-05-10T08:00:00.000Z',
      currentPeriodEnd: '2027-05-10T08:00:00.000Z',
      billingCycleAnchor: undefined,
    });
    expect(bounds(currentPeriod(new Date('2026-08-15T00:00:00Z'), sub))).toEqual([
      '20260810T080000',
      '2026-08-10T08:00:00.000Z',
      '2026-09-10T08:00:00.000Z',
    ]);
    // A yearly trial (anchor at its end): the window is the part of the anchored month inside it.
    const trial = subscription({
      interval: 'yearly',
      status: 'trialing',
      currentPeriodStart: '2026-11-03T09:03:07.000Z',
      currentPeriodEnd: '2026-11-17T00:00:00.000Z',
      billingCycleAnchor: '2026-11-17T00:00:00.000Z',
    });
    expect(bounds(currentPeriod(new Date('2026-11-10T00:00:00Z'), trial))).toEqual([
      '20261103T090307',
      '2026-11-03T09:03:07.000Z',
      '2026-11-17T00:00:00.000Z',
    ]);
  });

  it('continues a yearly plan past its end in anchored months starting at the stored end', () => {
    const sub = subscription({
      interval: 'yearly',
      currentPeriodStart: '2026-01-31T10:20:30.000Z',
      currentPeriodEnd: '2027-01-31T10:20:30.000Z',
    });
    expect(bounds(currentPeriod(new Date('2027-02-01T00:00:00Z'), sub))).toEqual([
      '20270131T102030',
      '2027-01-31T10:20:30.000Z',
      '2027-02-28T10:20:30.000Z',
    ]);
  });

  it('uses the calendar month without paid access, and after a period set to cancel has ended', () => {
    const at = new Date('2026-02-14T00:00:00Z');
    const february = calendarMonth(at);
    expect(february.key).toBe('2026-02');
    expect(currentPeriod(at, undefined)).toEqual(february);
    for (const status of SUBSCRIPTION_STATUSES) {
      const w = currentPeriod(at, subscription({ status }));
      if (status === 'canceled' || status === 'incomplete') expect(w).toEqual(february);
      // Locked and grace owners keep their subscription's windows, so paying resumes the same counter.
      else expect(w.key).toBe('20260131T102030');
    }
    const ending = subscription({ cancelAtPeriodEnd: true });
    expect(currentPeriod(at, ending).key).toBe('20260131T102030');
    expect(currentPeriod(new Date('2026-03-01T00:00:00Z'), ending)).toEqual(
      calendarMonth(new Date('2026-03-01T00:00:00Z')),
    );
  });

  it('before the stored period (a clock behind Stripe’s), ends the anchored month at the period start', () => {
    const sub = subscription({
      currentPeriodStart: '2026-02-28T10:20:30.000Z',
      currentPeriodEnd: '2026-03-31T10:20:30.000Z',
    });
    expect(bounds(currentPeriod(new Date('2026-02-28T10:20:00Z'), sub))).toEqual([
      '20260131T102030',
      '2026-01-31T10:20:30.000Z',
      '2026-02-28T10:20:30.000Z',
    ]);
  });

  it('keys windows so that the key alone gives back their start', () => {
    const windows = [
      currentPeriod(new Date('2026-03-05T00:00:00Z'), subscription({})),
      currentPeriod(new Date('2026-08-15T00:00:00Z'), subscription({ interval: 'yearly' })),
      calendarMonth(new Date('2026-08-15T00:00:00Z')),
    ];
    for (const w of windows) {
      expect(w.key).toMatch(PERIOD_KEY_PATTERN);
      expect(boundsFromKey(w.key)?.start).toEqual(w.start);
    }
  });
});
