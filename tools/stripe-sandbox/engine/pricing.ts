/** Pure arithmetic over prices and periods, shared by the modules that bill: amounts, intervals, a subscription's period. */
import type { ProrationBehavior } from '../params.js';
import type { Interval, WirePrice, WireSubscription } from '../wire.js';

export function formatAmount(amount: number, currency: string): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() }).format(
    amount / 100,
  );
}

export function dateLabel(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

export function unitAmount(price: WirePrice): number {
  return price.unit_amount ?? 0;
}

const INTERVALS: readonly Interval[] = ['day', 'week', 'month', 'year'];
const PRORATIONS: readonly ProrationBehavior[] = ['always_invoice', 'create_prorations', 'none'];

export function recurringOf(price: WirePrice): { interval: Interval; count: number } {
  const recurring = price.recurring;
  if (!recurring) throw new Error(`price ${price.id} is not recurring`);
  const interval = INTERVALS.find((known) => known === recurring.interval);
  if (!interval) throw new Error(`price ${price.id} has an unknown interval ${recurring.interval}`);
  return { interval, count: recurring.interval_count };
}

/** Stripe's enums are open (`string & {}`); the sandbox only ever stores the three it knows. */
export function prorationOf(value: string): ProrationBehavior {
  return PRORATIONS.find((known) => known === value) ?? 'create_prorations';
}

export function periodOf(sub: WireSubscription): { start: number; end: number } {
  const first = sub.items.data[0];
  if (!first) throw new Error(`subscription ${sub.id} has no items`);
  return { start: first.current_period_start, end: first.current_period_end };
}

export function intervalKey(items: ReadonlyArray<{ price: WirePrice }>): string {
  const first = items[0];
  if (!first) return '';
  const { interval, count } = recurringOf(first.price);
  return `${count}/${interval}`;
}
