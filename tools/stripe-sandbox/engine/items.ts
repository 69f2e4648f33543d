import { invalidRequest } from '../errors.js';
import { buildSubscriptionItem, type LineDraft, planOf } from '../objects.js';
import type { ProrationBehavior } from '../params.js';
import { addInterval, type WirePrice, type WireSubscription, type WireSubscriptionItem } from '../wire.js';
import type { Catalog } from './prices.js';
import { dateLabel, formatAmount, intervalKey, periodOf, recurringOf, unitAmount } from './pricing.js';
import type { EngineState, SubscriptionRecord } from './state.js';

export interface ItemTarget {
  existing: WireSubscriptionItem | null;
  price: WirePrice;
  quantity: number;
}

export interface ItemChange {
  readonly itemId: string;
  readonly before: { readonly price: WirePrice; readonly quantity: number } | null;
  readonly after: { readonly price: WirePrice; readonly quantity: number } | null;
}

export type Items = ReturnType<typeof createItems>;

/** A subscription's items and what changing them costs: Stripe's prorations and interval changes. */
export function createItems(state: EngineState, catalog: Catalog) {
  const { productName } = catalog;

  function validateItems(sub: WireSubscription, targets: readonly ItemTarget[], param: string): void {
    if (targets.length === 0) throw invalidRequest('A subscription needs at least one item.', param);
    const key = intervalKey(targets);
    for (const target of targets) {
      if (target.price.currency !== sub.currency) {
        throw invalidRequest(
          `Currency and interval fields must match across all plans on this subscription. Found mismatch in currency: ${target.price.currency} vs ${sub.currency}.`,
          param,
        );
      }
      if (intervalKey([target]) !== key) {
        throw invalidRequest(
          'Currency and interval fields must match across all plans on this subscription. Found mismatch in interval field.',
          param,
        );
      }
    }
  }

  /** Replaces the subscription's items, keeping item ids where an item is updated in place. */
  function setItems(sub: WireSubscription, targets: readonly ItemTarget[]): ItemChange[] {
    const { start, end } = periodOf(sub);
    const changes: ItemChange[] = [];
    const next = targets.map((target) => {
      const existing = target.existing;
      if (existing) {
        const before = { price: existing.price, quantity: existing.quantity ?? 1 };
        if (before.price.id !== target.price.id || before.quantity !== target.quantity) {
          changes.push({
            itemId: existing.id,
            before,
            after: { price: target.price, quantity: target.quantity },
          });
        }
        existing.price = target.price;
        existing.plan = planOf(target.price);
        existing.quantity = target.quantity;
        return existing;
      }
      const item = buildSubscriptionItem({
        subscriptionId: sub.id,
        price: target.price,
        quantity: target.quantity,
        created: state.now,
        periodStart: start,
        periodEnd: end,
      });
      changes.push({
        itemId: item.id,
        before: null,
        after: { price: target.price, quantity: target.quantity },
      });
      return item;
    });
    for (const old of sub.items.data) {
      if (!next.includes(old)) {
        changes.push({
          itemId: old.id,
          before: { price: old.price, quantity: old.quantity ?? 1 },
          after: null,
        });
      }
    }
    sub.items.data = next;
    return changes;
  }

  /**
   * Stripe's proration for a change at `at`: a credit for the unused time of what was there and a charge
   * for the remaining time of what replaces it, each `amount × remaining / period`.
   */
  function prorationLines(
    sub: WireSubscription,
    changes: readonly ItemChange[],
    period: { start: number; end: number },
    at: number,
    credits: 'credits_and_charges' | 'credits_only',
  ): LineDraft[] {
    if (at >= period.end || period.end <= period.start) return [];
    const fraction = (period.end - Math.max(at, period.start)) / (period.end - period.start);
    // A credit (sign -1, "Unused time") for what was there, a charge (+1, "Remaining time") for what replaces it.
    const line = (
      change: ItemChange,
      side: { readonly price: WirePrice; readonly quantity: number },
      sign: 1 | -1,
    ): LineDraft => ({
      amount: sign * Math.round(unitAmount(side.price) * side.quantity * fraction),
      currency: sub.currency,
      description: `${sign < 0 ? 'Unused' : 'Remaining'} time on ${side.quantity} × ${productName(side.price)} after ${dateLabel(at)}`,
      price: side.price,
      quantity: side.quantity,
      periodStart: at,
      periodEnd: period.end,
      subscriptionItemId: change.itemId,
      proration: true,
    });
    const lines: LineDraft[] = [];
    for (const change of changes) {
      if (change.before) lines.push(line(change, change.before, -1));
      if (change.after && credits === 'credits_and_charges') lines.push(line(change, change.after, 1));
    }
    return lines;
  }

  function cycleLines(sub: WireSubscription): LineDraft[] {
    return sub.items.data.map((item) => {
      const quantity = item.quantity ?? 1;
      const { interval } = recurringOf(item.price);
      return {
        amount: unitAmount(item.price) * quantity,
        currency: sub.currency,
        description: `${quantity} × ${productName(item.price)} (at ${formatAmount(unitAmount(item.price), sub.currency)} / ${interval})`,
        price: item.price,
        quantity,
        periodStart: item.current_period_start,
        periodEnd: item.current_period_end,
        subscriptionItemId: item.id,
        proration: false,
      };
    });
  }

  function setPeriod(sub: WireSubscription, start: number, end: number): void {
    for (const item of sub.items.data) {
      item.current_period_start = start;
      item.current_period_end = end;
    }
  }

  /**
   * Applies new items now, billing per `behavior`. A change of interval restarts the billing cycle today
   * and invoices at once (credit for the unused old period, the full new period), as Stripe does.
   */
  function applyItemChange(
    rec: SubscriptionRecord,
    targets: readonly ItemTarget[],
    behavior: ProrationBehavior,
    at: number,
  ): { changes: ItemChange[]; invoiceDrafts: LineDraft[] | null; restartedCycle: boolean } {
    const sub = rec.sub;
    const period = periodOf(sub);
    const oldKey = intervalKey(sub.items.data);
    const changes = setItems(sub, targets);
    if (changes.length === 0) return { changes, invoiceDrafts: null, restartedCycle: false };
    if (intervalKey(sub.items.data) !== oldKey) {
      const credits = behavior === 'none' ? [] : prorationLines(sub, changes, period, at, 'credits_only');
      const first = sub.items.data[0];
      if (!first) throw new Error('no items');
      const { interval, count } = recurringOf(first.price);
      sub.billing_cycle_anchor = at;
      setPeriod(sub, at, addInterval(at, interval, count));
      const drafts = [...credits, ...rec.pending.splice(0), ...cycleLines(sub)];
      return { changes, invoiceDrafts: drafts, restartedCycle: true };
    }
    if (behavior === 'none') return { changes, invoiceDrafts: null, restartedCycle: false };
    const lines = prorationLines(sub, changes, period, at, 'credits_and_charges');
    if (behavior === 'create_prorations') {
      rec.pending.push(...lines);
      return { changes, invoiceDrafts: null, restartedCycle: false };
    }
    return { changes, invoiceDrafts: [...rec.pending.splice(0), ...lines], restartedCycle: false };
  }

  return { validateItems, setItems, cycleLines, setPeriod, applyItemChange };
}
