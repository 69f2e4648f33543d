import { invalidRequest } from '../errors.js';
import { idOf, nextBoundary, type WireInvoice } from '../wire.js';
import { changedFields, type Pending, snap } from './changes.js';
import type { Events } from './events.js';
import type { Invoices } from './invoices.js';
import type { Items } from './items.js';
import { periodOf, recurringOf } from './pricing.js';
import type { Schedules } from './schedules.js';
import type { SentInvoices } from './sent-invoices.js';
import {
  AUTOMATIC,
  type EngineState,
  type ScheduleRecord,
  type SessionRecord,
  type SubscriptionRecord,
} from './state.js';
import { endSubscription } from './subscriptions.js';

type Occurrence =
  | { kind: 'session'; at: number; rec: SessionRecord }
  | { kind: 'renewal'; at: number; rec: SubscriptionRecord }
  | { kind: 'phase'; at: number; rec: ScheduleRecord }
  | { kind: 'overdue'; at: number; inv: WireInvoice };

const KIND_ORDER = { session: 0, renewal: 1, phase: 2, overdue: 3 } as const;

/**
 * The sandbox clock. Time moves only forward and only when asked; crossing a boundary does what Stripe
 * does there, in time order: open Checkout Sessions expire, subscriptions renew (or end), schedule
 * phases start, sent invoices fall overdue.
 */
export function createClock(
  state: EngineState,
  deps: {
    invoices: Invoices;
    items: Items;
    schedules: Schedules;
    sentInvoices: SentInvoices;
    events: Events;
  },
) {
  const { sessions, subscriptions, schedules, events } = state;
  const { createInvoice, finalize, finalizeAndCollect, openInvoicesOf } = deps.invoices;
  const { cycleLines, setPeriod } = deps.items;
  const { refreshCurrentPhase, step: scheduleStep } = deps.schedules;
  const { publish } = deps.events;

  function scheduleBoundaryAfter(schedRec: ScheduleRecord): number | undefined {
    let next: number | undefined;
    for (const phase of schedRec.schedule.phases) {
      for (const at of [phase.start_date, phase.end_date]) {
        if (at > schedRec.processedUntil && (next === undefined || at < next)) next = at;
      }
    }
    return next;
  }

  function nextOccurrence(limit: number): Occurrence | undefined {
    const candidates: Occurrence[] = [];
    for (const rec of sessions.values()) {
      if (rec.session.status === 'open' && rec.session.expires_at <= limit) {
        candidates.push({ kind: 'session', at: rec.session.expires_at, rec });
      }
    }
    for (const rec of subscriptions.values()) {
      const status = rec.sub.status;
      if (status === 'canceled' || status === 'incomplete_expired' || status === 'paused') continue;
      const end = periodOf(rec.sub).end;
      if (end <= limit) candidates.push({ kind: 'renewal', at: end, rec });
    }
    for (const rec of schedules.values()) {
      if (rec.schedule.status !== 'active' && rec.schedule.status !== 'not_started') continue;
      const at = scheduleBoundaryAfter(rec);
      if (at !== undefined && at <= limit) candidates.push({ kind: 'phase', at, rec });
    }
    for (const { at, inv } of deps.sentInvoices.overdueBy(limit))
      candidates.push({ kind: 'overdue', at, inv });
    candidates.sort((a, b) => a.at - b.at || KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
    return candidates[0];
  }

  function renew(rec: SubscriptionRecord, at: number): Pending[] {
    const sub = rec.sub;
    const before = structuredClone(sub);
    if (sub.cancel_at_period_end || (sub.cancel_at !== null && sub.cancel_at <= at)) {
      endSubscription(sub, at);
      rec.pending = [];
      return [snap('customer.subscription.deleted', sub)];
    }
    let schedulePending: Pending[] = [];
    if (sub.schedule !== null) {
      const schedRec = schedules.get(idOf(sub.schedule));
      if (schedRec && (schedRec.schedule.status === 'active' || schedRec.schedule.status === 'not_started')) {
        const step = scheduleStep(schedRec, rec, at, true);
        schedulePending = step.pending;
        if (step.canceled) return [snap('customer.subscription.deleted', sub), ...schedulePending];
      }
    }
    const first = sub.items.data[0];
    if (!first) throw new Error(`subscription ${sub.id} has no items`);
    const { interval, count } = recurringOf(first.price);
    const previousPeriod = periodOf(before);
    setPeriod(sub, at, nextBoundary(sub.billing_cycle_anchor, interval, count, at));
    if (sub.pause_collection?.resumes_at !== null && sub.pause_collection?.resumes_at !== undefined) {
      if (sub.pause_collection.resumes_at <= at) sub.pause_collection = null;
    }

    // Stripe's renewal invoice covers the period that just ended in `period_start/end`; its lines carry
    // the new period.
    const inv = createInvoice(
      rec,
      [...rec.pending.splice(0), ...cycleLines(sub)],
      'subscription_cycle',
      previousPeriod,
    );
    let invoicePending: Pending[];
    const pause = sub.pause_collection;
    if (pause) {
      invoicePending = [snap('invoice.created', inv)];
      if (pause.behavior === 'void') {
        finalize(inv);
        inv.status = 'void';
        inv.amount_remaining = 0;
        inv.status_transitions.voided_at = at;
        invoicePending.push(snap('invoice.finalized', inv), snap('invoice.voided', inv));
      } else if (pause.behavior === 'mark_uncollectible') {
        finalize(inv);
        inv.status = 'uncollectible';
        inv.status_transitions.marked_uncollectible_at = at;
        invoicePending.push(snap('invoice.finalized', inv), snap('invoice.marked_uncollectible', inv));
      }
    } else {
      const collected = finalizeAndCollect(inv, sub.status !== 'unpaid');
      invoicePending = collected.pending;
      if (collected.paid && sub.status === 'past_due' && openInvoicesOf(sub.id).length === 0)
        sub.status = 'active';
      if (!collected.paid && sub.status === 'active') sub.status = 'past_due';
    }
    const previous = changedFields(before, sub);
    return [
      ...invoicePending,
      ...(previous ? [snap('customer.subscription.updated', sub, previous)] : []),
      ...schedulePending,
    ];
  }

  function midPeriodPhase(schedRec: ScheduleRecord, at: number): Pending[] {
    const subId = schedRec.schedule.subscription === null ? null : idOf(schedRec.schedule.subscription);
    const rec = subId === null ? undefined : subscriptions.get(subId);
    if (!rec || rec.sub.status === 'canceled') {
      schedRec.processedUntil = at;
      return [];
    }
    const before = structuredClone(rec.sub);
    const step = scheduleStep(schedRec, rec, at, false);
    const previous = changedFields(before, rec.sub);
    if (step.canceled) return [snap('customer.subscription.deleted', rec.sub), ...step.pending];
    return [
      ...(previous ? [snap('customer.subscription.updated', rec.sub, previous)] : []),
      ...step.invoicePending,
      ...step.pending,
    ];
  }

  /** Moves the clock forward, acting on every boundary crossed in time order. */
  function advanceTo(target: number): { from: number; to: number; events: number } {
    if (!Number.isFinite(target) || target < state.now) {
      throw invalidRequest(
        `The sandbox clock only moves forward (it is at ${new Date(state.now * 1000).toISOString()}).`,
      );
    }
    const from = state.now;
    const startCount = events.length;
    for (let guard = 0; guard < 100_000; guard++) {
      const next = nextOccurrence(target);
      if (!next) break;
      state.now = Math.max(state.now, next.at);
      if (next.kind === 'session') {
        next.rec.session.status = 'expired';
        next.rec.session.url = null;
        publish(AUTOMATIC, [snap('checkout.session.expired', next.rec.session)]);
      } else if (next.kind === 'overdue') {
        publish(AUTOMATIC, deps.sentInvoices.markOverdue(next.inv));
      } else if (next.kind === 'renewal') {
        publish(AUTOMATIC, renew(next.rec, next.at));
      } else {
        publish(AUTOMATIC, midPeriodPhase(next.rec, next.at));
      }
    }
    state.now = target;
    for (const schedRec of schedules.values()) {
      if (schedRec.schedule.status === 'active') refreshCurrentPhase(schedRec.schedule);
    }
    return { from, to: state.now, events: events.length - startCount };
  }

  return { now: () => state.now, advanceTo };
}
