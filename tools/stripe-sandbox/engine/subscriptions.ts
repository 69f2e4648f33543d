import { cardDeclined, invalidRequest } from '../errors.js';
import type { LineDraft } from '../objects.js';
import type { SubscriptionUpdateParams } from '../params.js';
import { addInterval, idOf, type WireSubscription } from '../wire.js';
import { changedFields, mergeMetadata, type Pending, snap } from './changes.js';
import type { Events } from './events.js';
import type { Invoices } from './invoices.js';
import type { Items, ItemTarget } from './items.js';
import type { Catalog } from './prices.js';
import { periodOf, recurringOf } from './pricing.js';
import {
  AUTOMATIC,
  type EngineState,
  found,
  missing,
  newestFirst,
  type RequestContext,
  type SubscriptionRecord,
} from './state.js';

export type ForcedStatus = 'unpaid' | 'paused' | 'active' | 'past_due';

export function endSubscription(sub: WireSubscription, at: number): void {
  sub.status = 'canceled';
  sub.ended_at = at;
  sub.canceled_at = sub.canceled_at ?? at;
  // Stripe leaves cancel_at_period_end and cancel_at as they were on the ended subscription: a
  // subscription canceled at period end still says `cancel_at_period_end: true` once deleted.
  sub.pause_collection = null;
}

export type Subscriptions = ReturnType<typeof createSubscriptions>;

/** Subscription updates (items, cancel at period end, pause), immediate cancellation, and forced statuses. */
export function createSubscriptions(
  state: EngineState,
  deps: { catalog: Catalog; invoices: Invoices; items: Items; events: Events },
) {
  const { subscriptions, schedules, failingCustomers } = state;
  const { recurringPrice } = deps.catalog;
  const { createInvoice, finalizeAndCollect } = deps.invoices;
  const { validateItems, applyItemChange, setPeriod } = deps.items;
  const { publish } = deps.events;

  function subscriptionRecord(id: string, param?: string): SubscriptionRecord {
    return found(subscriptions, 'subscription', id, param);
  }

  function updateSubscription(
    id: string,
    params: SubscriptionUpdateParams,
    ctx: RequestContext,
  ): WireSubscription {
    const rec = subscriptionRecord(id);
    const sub = rec.sub;
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      const allowed = new Set(['metadata', 'expand']);
      const other = Object.keys(params).find((key) => !allowed.has(key));
      if (other !== undefined) {
        throw invalidRequest(
          'A canceled subscription can only update its cancellation_details and metadata.',
          other,
        );
      }
    }
    if (params.cancel_at_period_end !== undefined && sub.schedule !== null) {
      throw invalidRequest(
        `The subscription is managed by the subscription schedule \`${idOf(sub.schedule)}\`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead.`,
        'cancel_at_period_end',
      );
    }
    const before = structuredClone(sub);
    const pendingBefore = [...rec.pending];
    const invoicePending: Pending[] = [];

    let drafts: LineDraft[] | null = null;
    if (params.items) {
      const targets: ItemTarget[] = sub.items.data.map((item) => ({
        existing: item,
        price: item.price,
        quantity: item.quantity ?? 1,
      }));
      params.items.forEach((param, i) => {
        if (param.id !== undefined) {
          const target = targets.find((t) => t.existing?.id === param.id);
          if (!target) throw missing('subscription item', param.id, `items[${i}][id]`);
          if (param.price !== undefined) target.price = recurringPrice(param.price, `items[${i}][price]`);
          if (param.quantity !== undefined) target.quantity = param.quantity;
        } else {
          if (param.price === undefined) {
            throw invalidRequest(
              `Missing required param: items[${i}][price].`,
              `items[${i}][price]`,
              'parameter_missing',
            );
          }
          targets.push({
            existing: null,
            price: recurringPrice(param.price, `items[${i}][price]`),
            quantity: param.quantity ?? 1,
          });
        }
      });
      validateItems(sub, targets, 'items');
      drafts = applyItemChange(
        rec,
        targets,
        params.proration_behavior ?? 'create_prorations',
        state.now,
      ).invoiceDrafts;
    }
    if (params.cancel_at_period_end !== undefined) {
      sub.cancel_at_period_end = params.cancel_at_period_end;
      sub.cancel_at = params.cancel_at_period_end ? periodOf(sub).end : null;
      sub.canceled_at = params.cancel_at_period_end ? state.now : null;
      sub.cancellation_details = {
        comment: null,
        feedback: null,
        feedback_option: null,
        reason: params.cancel_at_period_end ? 'cancellation_requested' : null,
      };
    }
    if (params.metadata !== undefined) sub.metadata = mergeMetadata(sub.metadata, params.metadata);
    if (params.pause_collection !== undefined) {
      sub.pause_collection =
        params.pause_collection === ''
          ? null
          : {
              behavior: params.pause_collection.behavior,
              resumes_at: params.pause_collection.resumes_at ?? null,
            };
    }

    if (drafts !== null) {
      const amount = drafts.reduce((sum, line) => sum + line.amount, 0);
      const customerId = idOf(sub.customer);
      if (
        params.payment_behavior === 'error_if_incomplete' &&
        amount > 0 &&
        failingCustomers.has(customerId)
      ) {
        rec.sub = before;
        rec.pending = pendingBefore;
        throw cardDeclined();
      }
      const inv = createInvoice(rec, drafts, 'subscription_update', { start: state.now, end: state.now });
      const collected = finalizeAndCollect(inv, true);
      invoicePending.push(...collected.pending);
      if (!collected.paid) sub.status = 'past_due';
    }

    const previous = changedFields(before, sub);
    publish(ctx, [
      ...(previous ? [snap('customer.subscription.updated', sub, previous)] : []),
      ...invoicePending,
    ]);
    return sub;
  }

  function cancelSubscription(
    id: string,
    params: { cancellation_details?: { comment?: string; feedback?: string } },
    ctx: RequestContext,
  ): WireSubscription {
    const rec = subscriptionRecord(id);
    const sub = rec.sub;
    if (sub.status === 'canceled') {
      throw invalidRequest(`This subscription (${id}) has already been canceled.`);
    }
    endSubscription(sub, state.now);
    sub.canceled_at = state.now;
    sub.cancellation_details = {
      comment: params.cancellation_details?.comment ?? null,
      feedback: params.cancellation_details?.feedback ?? null,
      feedback_option: null,
      reason: 'cancellation_requested',
    };
    rec.pending = [];
    const pending = [snap('customer.subscription.deleted', sub)];
    if (sub.schedule !== null) {
      const schedRec = schedules.get(idOf(sub.schedule));
      if (schedRec && (schedRec.schedule.status === 'active' || schedRec.schedule.status === 'not_started')) {
        schedRec.schedule.status = 'canceled';
        schedRec.schedule.canceled_at = state.now;
        schedRec.schedule.current_phase = null;
        pending.push(snap('subscription_schedule.canceled', schedRec.schedule));
      }
    }
    publish(ctx, pending);
    return sub;
  }

  function forceStatus(id: string, status: ForcedStatus): WireSubscription {
    const rec = subscriptionRecord(id);
    const sub = rec.sub;
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      throw invalidRequest(`Subscription ${id} is ${sub.status}; its status can no longer change.`);
    }
    if (sub.status === status) return sub;
    const before = structuredClone(sub);
    const wasPaused = sub.status === 'paused';
    sub.status = status;
    if (wasPaused && periodOf(sub).end <= state.now) {
      // Resuming restarts the billing cycle today, so no stale boundary is billed later.
      const first = sub.items.data[0];
      if (first) {
        const { interval, count } = recurringOf(first.price);
        sub.billing_cycle_anchor = state.now;
        setPeriod(sub, state.now, addInterval(state.now, interval, count));
      }
    }
    const pending = [snap('customer.subscription.updated', sub, changedFields(before, sub))];
    if (status === 'paused') pending.push(snap('customer.subscription.paused', sub));
    if (wasPaused) pending.push(snap('customer.subscription.resumed', sub));
    publish(AUTOMATIC, pending);
    return sub;
  }

  return {
    subscriptionRecord,
    subscription: (id: string) => subscriptionRecord(id).sub,
    subscriptions: () => newestFirst([...subscriptions.values()].map((rec) => rec.sub)),
    updateSubscription,
    cancelSubscription,
    forceStatus,
  };
}
