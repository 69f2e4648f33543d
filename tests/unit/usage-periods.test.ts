import { describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import type { ConsumeAnswer } from '../../src/billing/usage-service.js';
import type { Services } from '../../src/composition.js';
import { givenSubscription, manualClock, memoryServices } from '../support/memory.js';

/**
 * Usage windows through the real wiring (usage service -> decision path -> metering) over memory tables:
 * a paid owner never gets a fresh allowance between a period's end and its late renewal event (issue 8,
 * defect 5), and a yearly owner gets the monthly allowance every month (defect 6).
 */

const allowance = catalog.pro.limits.executions;
if (allowance === null) throw new Error('these tests need a finite Pro allowance');
const ALICE = { userId: 'alice' } as const;

function setup(start: string) {
  const clock = manualClock(start);
  const services = memoryServices({}, clock);
  let runs = 0;
  const consume = (quantity: number): Promise<ConsumeAnswer> =>
    services.usage.consume({
      subject: ALICE,
      meter: 'executions',
      quantity,
      idempotencyKey: `run-${++runs}`,
    });
  const usage = async () =>
    (await services.summaries.forWorkspace('alice', { kind: 'personal', userId: 'alice' }, 'alice')).usage
      .executions;
  return { clock, services, consume, usage };
}

function outcomeOf(answer: ConsumeAnswer, kind: ConsumeAnswer['kind']) {
  expect(answer.kind).toBe(kind);
  return answer.outcome;
}

/** Pro monthly, anchored on the 31st at 09:30, in its period Oct 31 - Nov 30. */
async function givenProMonthly(services: Services, period: { start: string; end: string }) {
  await givenSubscription(services, 'alice', {
    plan: 'pro',
    status: 'active',
    interval: 'monthly',
    currentPeriodStart: period.start,
    currentPeriodEnd: period.end,
    billingCycleAnchor: '2026-10-31T09:30:00.000Z',
  });
}

describe('usage windows: a renewal event that comes late', () => {
  const october = { start: '2026-10-31T09:30:00.000Z', end: '2026-11-30T09:30:00.000Z' };
  const november = { start: '2026-11-30T09:30:00.000Z', end: '2026-12-31T09:30:00.000Z' };

  it('gives a Pro owner one allowance in the window past the period end, which the renewal continues', async () => {
    const { clock, services, consume, usage } = setup('2026-11-15T12:00:00.000Z');
    await givenProMonthly(services, october);
    outcomeOf(await consume(allowance), 'consumed');
    expect(outcomeOf(await consume(1), 'denied')).toMatchObject({ periodKey: '20261031T093000' });

    // The period has ended and Stripe's renewal event has not arrived: the next window is the renewed
    // period's, one allowance and no more.
    clock.set('2026-11-30T10:00:00.000Z');
    const before = outcomeOf(await consume(allowance - 100), 'consumed');
    expect(before).toMatchObject({
      periodKey: '20261130T093000',
      periodStart: november.start,
      periodEnd: november.end,
      used: allowance - 100,
    });
    expect(
      await services.tables.billing.get('rollover|2026-12-31', 'alice|executions|20261130T093000'),
    ).toBeDefined();

    // The renewal arrives with the period starting at the old end: the same counter goes on.
    clock.set('2026-11-30T11:00:00.000Z');
    await givenProMonthly(services, november);
    expect(outcomeOf(await consume(101), 'denied')).toMatchObject({
      periodKey: '20261130T093000',
      used: allowance - 100,
    });
    expect(outcomeOf(await consume(100), 'consumed')).toMatchObject({
      periodKey: '20261130T093000',
      used: allowance,
    });
    expect(outcomeOf(await consume(1), 'denied')).toMatchObject({ allowanceRemaining: 0 });
    expect(await usage()).toMatchObject({
      used: allowance,
      periodStart: november.start,
      periodEnd: november.end,
    });

    // Across the old window and the new one: two allowances, never more, and one per window.
    const history = await services.rollover.history({
      ownerId: 'alice',
      meter: 'executions',
      from: new Date(october.start),
      to: new Date(november.end),
    });
    expect(history.periods.map((p) => [p.periodKey, p.used, p.periodEnd])).toEqual([
      ['20261031T093000', allowance, october.end],
      ['20261130T093000', allowance, november.end],
    ]);
    expect(history.totals.used).toBe(2 * allowance);
  });

  it('refuses beyond one allowance in the window past the end, before the renewal arrives', async () => {
    const { clock, services, consume, usage } = setup('2026-11-29T12:00:00.000Z');
    await givenProMonthly(services, october);
    outcomeOf(await consume(allowance), 'consumed');
    clock.set('2026-12-01T00:00:00.000Z');
    outcomeOf(await consume(allowance), 'consumed');
    expect(outcomeOf(await consume(1), 'denied')).toMatchObject({ periodKey: '20261130T093000' });
    // What the summary shows is the window in force: exact bounds, not the calendar month.
    expect(await usage()).toMatchObject({
      used: allowance,
      allowanceRemaining: 0,
      periodStart: november.start,
      periodEnd: november.end,
    });
    await givenProMonthly(services, november);
    expect(outcomeOf(await consume(1), 'denied')).toMatchObject({
      periodKey: '20261130T093000',
      used: allowance,
    });
  });

  it('moves a counter to the end the renewal brings, indexing the new day and closing it there', async () => {
    // A row from before the anchor was stored, whose start was clamped (anchor on the 31st): the start
    // stands in for the anchor, so the window assumed past the end ends on the 28th, not the 30th.
    const { clock, services, consume, usage } = setup('2026-04-01T00:00:00.000Z');
    await givenSubscription(services, 'alice', {
      plan: 'pro',
      status: 'active',
      currentPeriodStart: '2026-02-28T09:30:00.000Z',
      currentPeriodEnd: '2026-03-31T09:30:00.000Z',
    });
    expect(outcomeOf(await consume(5), 'consumed')).toMatchObject({
      periodKey: '20260331T093000',
      periodEnd: '2026-04-28T09:30:00.000Z',
    });
    const table = services.tables.billing;
    const indexRow = 'alice|executions|20260331T093000';
    expect(await table.get('rollover|2026-04-28', indexRow)).toBeDefined();

    await givenSubscription(services, 'alice', {
      plan: 'pro',
      status: 'active',
      currentPeriodStart: '2026-03-31T09:30:00.000Z',
      currentPeriodEnd: '2026-04-30T09:30:00.000Z',
      billingCycleAnchor: '2026-01-31T09:30:00.000Z',
    });
    expect(await usage()).toMatchObject({ used: 5, periodEnd: '2026-04-30T09:30:00.000Z' });
    expect(outcomeOf(await consume(1), 'consumed')).toMatchObject({
      used: 6,
      periodEnd: '2026-04-30T09:30:00.000Z',
    });
    expect(await table.get('rollover|2026-04-30', indexRow)).toBeDefined();

    // The old end passes: nothing is closed early; the new end closes it with its real bounds.
    clock.set('2026-04-29T00:00:00.000Z');
    expect(await services.rollover.run()).toMatchObject({ closed: 0, moved: 1 });
    expect(await table.get('rollover|2026-04-28', indexRow)).toBeUndefined();
    clock.set('2026-05-01T00:00:00.000Z');
    expect(await services.rollover.run()).toMatchObject({ closed: 1 });
    expect((await table.get('alice', 'record|executions|20260331T093000'))?.props).toMatchObject({
      used: 6,
      periodStart: '2026-03-31T09:30:00.000Z',
      periodEnd: '2026-04-30T09:30:00.000Z',
    });
  });
});

describe('usage windows: a yearly plan', () => {
  it('gives the allowance in each of the twelve months anchored on the subscription', async () => {
    const { clock, services, consume, usage } = setup('2026-01-31T09:30:00.000Z');
    await givenSubscription(services, 'alice', {
      plan: 'pro',
      status: 'active',
      interval: 'yearly',
      currentPeriodStart: '2026-01-31T09:30:00.000Z',
      currentPeriodEnd: '2027-01-31T09:30:00.000Z',
      billingCycleAnchor: '2026-01-31T09:30:00.000Z',
    });
    const monthStarts = [
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
    ];
    const keys = new Set<string>();
    let total = 0;
    for (const [i, day] of monthStarts.entries()) {
      const end = `${monthStarts[i + 1] ?? '2027-01-31'}T09:30:00.000Z`;
      clock.set(`${day}T09:30:00.000Z`);
      const first = outcomeOf(await consume(allowance - 1), 'consumed');
      expect(first).toMatchObject({
        periodStart: `${day}T09:30:00.000Z`,
        periodEnd: end,
        used: allowance - 1,
      });
      keys.add(first.periodKey);
      // The last instant of the month: still the same window, one unit left, then refused.
      clock.set(new Date(Date.parse(end) - 1).toISOString());
      outcomeOf(await consume(1), 'consumed');
      expect(outcomeOf(await consume(1), 'denied')).toMatchObject({
        periodKey: first.periodKey,
        used: allowance,
      });
      expect(await usage()).toMatchObject({ used: allowance, periodEnd: end });
      total += allowance;
    }
    expect(keys.size).toBe(12);
    expect(total).toBe(12 * allowance);
    const history = await services.rollover.history({
      ownerId: 'alice',
      meter: 'executions',
      from: new Date('2026-01-31T09:30:00.000Z'),
      to: new Date('2027-01-31T09:30:00.000Z'),
    });
    expect(history.periods).toHaveLength(12);
    expect(history.totals.used).toBe(12 * allowance);
  });
});
