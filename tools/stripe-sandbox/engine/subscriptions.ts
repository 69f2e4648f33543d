import { cardDeclined, invalidRequest } from '../errors.js';
import type { LineDraft } from '../objects.js';
import type { InvoicePreviewParams, ItemParam, SubscriptionUpdateParams } from '../params.js';
import { addInterval, idOf, ids, type WireInvoice, type WireSubscription } from '../wire.js';
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
  const { createInvoice, draftInvoice, finalizeAndCollect } = deps.invoices;
  const { validateItems, applyItemChange, setPeriod } = deps.items;
  const { publish } = deps.events;

  function subscriptionRecord(id: string, param?: string): SubscriptionRecord {
    return found(subscriptions, 'subscription', id, param);
  }

  /** The items a subscription has after `items` (Stripe's `items[]` of an update) are applied to it. */
  function itemTargets(sub: WireSubscription, items: readonly ItemParam[], param: string): ItemTarget[] {
    const targets: ItemTarget[] = sub.items.data.map((item) => ({
      existing: item,
      price: item.price,
      quantity: item.quantity ?? 1,
    }));
    items.forEach((item, i) => {
      if (item.id !== undefined) {
        const target = targets.find((t) => t.existing?.id === item.id);
        if (!target) throw missing('subscription item', item.id, `${param}[${i}][id]`);
        if (item.price !== undefined) target.price = recurringPrice(item.price, `${param}[${i}][price]`);
        if (item.quantity !== undefined) target.quantity = item.quantity;
      } else {
        if (item.price === undefined) {
          throw invalidRequest(
            `Missing required param: ${param}[${i}][price].`,
            `${param}[${i}][price]`,
            'parameter_missing',
          );
        }
        targets.push({
          existing: null,
          price: recurringPrice(item.price, `${param}[${i}][price]`),
          quantity: item.quantity ?? 1,
        });
      }
    });
    return targets;
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
      const targets = itemTargets(sub, params.items, 'items');
      validateItems(sub, targets, 'items');
      drafts = applyItemChange(
        rec,
        targets,
        params.proration_behavior ?? 'create_prorations',
        params.proration_date ?? state.now,
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

  /**
   * Stripe's invoice preview of an item change: the update's own code (`itemTargets`, `applyItemChange`)
   * runs on a copy of the subscription, so the preview bills exactly what the update would, and nothing
   * is stored or sent. Only changes invoiced at once are previewed (`always_invoice`, or an interval
   * change, which restarts the cycle); a renewal preview is not modelled.
   */
  function previewInvoice(params: InvoicePreviewParams): WireInvoice {
    if (params.subscription === undefined) {
      throw invalidRequest(
        'The sandbox previews changes of an existing subscription only: pass `subscription`.',
        'subscription',
      );
    }
    const rec = subscriptionRecord(params.subscription, 'subscription');
    if (params.customer !== undefined && params.customer !== idOf(rec.sub.customer)) {
      throw invalidRequest(
        `The subscription ${rec.sub.id} does not belong to the customer ${params.customer}.`,
        'customer',
      );
    }
    const details = params.subscription_details;
    if (details?.items === undefined) {
      throw invalidRequest(
        'The sandbox previews item changes only: pass `subscription_details[items]`.',
        'subscription_details[items]',
      );
    }
    const { start, end } = periodOf(rec.sub);
    const at = details.proration_date ?? state.now;
    if (at < start || at >= end) {
      throw invalidRequest(
        'The `proration_date` must be within the current period of the subscription.',
        'subscription_details[proration_date]',
      );
    }
    const copy: SubscriptionRecord = structuredClone(rec);
    const targets = itemTargets(copy.sub, details.items, 'subscription_details[items]');
    validateItems(copy.sub, targets, 'subscription_details[items]');
    const { invoiceDrafts } = applyItemChange(
      copy,
      targets,
      details.proration_behavior ?? 'create_prorations',
      at,
    );
    if (invoiceDrafts === null) {
      throw invalidRequest(
        'The sandbox previews only changes invoiced at once: pass `subscription_details[proration_behavior]=always_invoice` (or change the interval).',
        'subscription_details[proration_behavior]',
      );
    }
    return draftInvoice(copy, invoiceDrafts, 'upcoming', { start: at, end: at }, `upcoming_${ids.invoice()}`);
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
    previewInvoice,
    cancelSubscription,
    forceStatus,
  };
}
