import { invalidRequest } from '../errors.js';
import { buildPhase, buildSchedule } from '../objects.js';
import type { MetadataParam, PhaseParams, ScheduleUpdateParams } from '../params.js';
import { addInterval, idOf, ids, type WirePhase, type WireSchedule, type WireSubscription } from '../wire.js';
import { changedFields, freshMetadata, mergeMetadata, type Pending, snap } from './changes.js';
import type { Events } from './events.js';
import type { Invoices } from './invoices.js';
import type { Items, ItemTarget } from './items.js';
import type { Catalog } from './prices.js';
import { intervalKey, periodOf, prorationOf, recurringOf } from './pricing.js';
import {
  type EngineState,
  found,
  type RequestContext,
  type ScheduleRecord,
  type SubscriptionRecord,
} from './state.js';
import { endSubscription, type Subscriptions } from './subscriptions.js';

export type Schedules = ReturnType<typeof createSchedules>;

/**
 * Subscription schedules: made from a subscription, updated phase by phase, released; and what a phase
 * boundary does to the subscription when the clock crosses it (`step`).
 */
export function createSchedules(
  state: EngineState,
  deps: { catalog: Catalog; invoices: Invoices; items: Items; subscriptions: Subscriptions; events: Events },
) {
  const { schedules, subscriptions } = state;
  const { price, recurringPrice } = deps.catalog;
  const { createInvoice, finalizeAndCollect } = deps.invoices;
  const { validateItems, setItems, applyItemChange } = deps.items;
  const { subscriptionRecord } = deps.subscriptions;
  const { publish } = deps.events;

  function scheduleRecord(id: string): ScheduleRecord {
    return found(schedules, 'subscription schedule', id);
  }

  function phaseAt(schedule: WireSchedule, at: number): WirePhase | undefined {
    return schedule.phases.find((phase) => phase.start_date <= at && at < phase.end_date);
  }

  function refreshCurrentPhase(schedule: WireSchedule): void {
    const phase = phaseAt(schedule, state.now);
    schedule.current_phase = phase ? { start_date: phase.start_date, end_date: phase.end_date } : null;
  }

  function phaseTargets(sub: WireSubscription, phase: WirePhase): ItemTarget[] {
    const remaining = [...sub.items.data];
    return phase.items.map((item) => {
      const p = price(idOf(item.price));
      const index = remaining.findIndex((existing) => existing.price.id === p.id);
      const existing = index === -1 ? null : (remaining.splice(index, 1)[0] ?? null);
      return { existing, price: p, quantity: item.quantity ?? 1 };
    });
  }

  function createSchedule(
    params: { from_subscription: string; metadata?: MetadataParam },
    ctx: RequestContext,
  ) {
    const rec = subscriptionRecord(params.from_subscription, 'from_subscription');
    const sub = rec.sub;
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      throw invalidRequest(`You cannot migrate a canceled subscription (${sub.id}).`, 'from_subscription');
    }
    if (sub.schedule !== null) {
      throw invalidRequest(
        `You cannot migrate a subscription that is already attached to a schedule: \`${idOf(sub.schedule)}\`.`,
        'from_subscription',
      );
    }
    if (sub.cancel_at_period_end || sub.cancel_at !== null) {
      throw invalidRequest(
        'The sandbox does not migrate a subscription that is set to cancel; clear cancel_at_period_end first.',
        'from_subscription',
      );
    }
    const period = periodOf(sub);
    const phase = buildPhase({
      items: sub.items.data.map((item) => ({ price: item.price, quantity: item.quantity ?? 1 })),
      startDate: period.start,
      endDate: period.end,
      prorationBehavior: 'create_prorations',
      metadata: {},
    });
    const schedule = buildSchedule({
      id: ids.schedule(),
      subscriptionId: sub.id,
      customerId: idOf(sub.customer),
      created: state.now,
      endBehavior: 'release',
      phases: [phase],
      currentPhase: { start_date: period.start, end_date: period.end },
    });
    schedule.metadata = freshMetadata(params.metadata);
    schedules.set(schedule.id, { schedule, processedUntil: state.now });
    const before = structuredClone(sub);
    sub.schedule = schedule.id;
    publish(ctx, [
      snap('subscription_schedule.created', schedule),
      snap('customer.subscription.updated', sub, changedFields(before, sub)),
    ]);
    return schedule;
  }

  function resolvePhases(
    schedule: WireSchedule,
    sub: WireSubscription,
    phases: readonly PhaseParams[],
  ): WirePhase[] {
    const resolved: WirePhase[] = [];
    let previousEnd: number | null = null;
    phases.forEach((phase, i) => {
      const param = `phases[${i}]`;
      const items = phase.items.map((item, j) => ({
        price: recurringPrice(item.price, `${param}[items][${j}][price]`),
        quantity: item.quantity ?? 1,
      }));
      validateItems(
        sub,
        items.map((item) => ({ existing: null, ...item })),
        `${param}[items]`,
      );
      let start: number;
      if (phase.start_date !== undefined) {
        start = phase.start_date === 'now' ? state.now : phase.start_date;
        if (previousEnd !== null && start !== previousEnd) {
          throw invalidRequest(
            `Phase ${i} must start when phase ${i - 1} ends (${previousEnd}); leave start_date out after the first phase.`,
            `${param}[start_date]`,
          );
        }
      } else {
        start = previousEnd ?? schedule.current_phase?.start_date ?? state.now;
      }
      let end: number;
      if (phase.end_date !== undefined) end = phase.end_date === 'now' ? state.now : phase.end_date;
      else if (phase.duration)
        end = addInterval(start, phase.duration.interval, phase.duration.interval_count ?? 1);
      else {
        const first = items[0];
        if (!first) throw invalidRequest('A phase needs at least one item.', `${param}[items]`);
        const { interval, count } = recurringOf(first.price);
        end = addInterval(start, interval, count);
      }
      if (phase.end_date !== undefined && phase.duration) {
        throw invalidRequest('You may pass only one of end_date and duration.', `${param}[end_date]`);
      }
      if (end <= start) throw invalidRequest('A phase must end after it starts.', `${param}[end_date]`);
      resolved.push(
        buildPhase({
          items,
          startDate: start,
          endDate: end,
          prorationBehavior: phase.proration_behavior ?? 'create_prorations',
          metadata: freshMetadata(phase.metadata),
        }),
      );
      previousEnd = end;
    });
    const current = schedule.current_phase;
    const first = resolved[0];
    // Stripe keeps the phases that have started: the update's first phase must be the current one,
    // starting exactly when it started (a schedule made in the Dashboard may start it mid-period).
    if (current && first && current.start_date <= state.now && first.start_date !== current.start_date) {
      throw invalidRequest(
        'You can not modify the start date of the current phase.',
        'phases[0][start_date]',
      );
    }
    return resolved;
  }

  function updateSchedule(id: string, params: ScheduleUpdateParams, ctx: RequestContext): WireSchedule {
    const schedRec = scheduleRecord(id);
    const schedule = schedRec.schedule;
    if (schedule.status !== 'active' && schedule.status !== 'not_started') {
      throw invalidRequest(
        `You cannot update a subscription schedule that is currently in the \`${schedule.status}\` status. It must be in one of the following statuses: \`not_started\`, \`active\`.`,
      );
    }
    const subId = schedule.subscription === null ? null : idOf(schedule.subscription);
    const rec = subId === null ? undefined : subscriptions.get(subId);
    if (!rec) throw invalidRequest(`Subscription schedule ${id} has no subscription.`);
    const sub = rec.sub;
    const before = structuredClone(sub);
    const pending: Pending[] = [];
    if (params.phases) schedule.phases = resolvePhases(schedule, sub, params.phases);
    if (params.end_behavior !== undefined) {
      schedule.end_behavior = params.end_behavior === 'renew' ? 'release' : params.end_behavior;
    }
    if (params.metadata !== undefined)
      schedule.metadata = mergeMetadata(schedule.metadata ?? {}, params.metadata);
    refreshCurrentPhase(schedule);

    // A current phase whose items differ from the subscription's takes effect now.
    let invoicePending: Pending[] = [];
    const current = phaseAt(schedule, state.now);
    if (current) {
      const behavior = params.proration_behavior ?? current.proration_behavior;
      const targets = phaseTargets(sub, current);
      validateItems(sub, targets, 'phases');
      const { invoiceDrafts } = applyItemChange(rec, targets, prorationOf(behavior), state.now);
      if (invoiceDrafts) {
        const inv = createInvoice(rec, invoiceDrafts, 'subscription_update', {
          start: state.now,
          end: state.now,
        });
        const collected = finalizeAndCollect(inv, true);
        invoicePending = collected.pending;
        if (!collected.paid) sub.status = 'past_due';
      }
    }
    schedRec.processedUntil = Math.max(schedRec.processedUntil, state.now);
    pending.push(snap('subscription_schedule.updated', schedule));
    const previous = changedFields(before, sub);
    if (previous) pending.push(snap('customer.subscription.updated', sub, previous));
    publish(ctx, [...pending, ...invoicePending]);
    return schedule;
  }

  function releaseSchedule(id: string, ctx: RequestContext): WireSchedule {
    const schedRec = scheduleRecord(id);
    const schedule = schedRec.schedule;
    if (schedule.status !== 'active' && schedule.status !== 'not_started') {
      throw invalidRequest(
        `You cannot release a subscription schedule that is currently in the \`${schedule.status}\` status. It must be in one of the following statuses: \`not_started\`, \`active\`.`,
      );
    }
    const pending = releaseInternal(schedRec);
    publish(ctx, pending);
    return schedule;
  }

  function releaseInternal(schedRec: ScheduleRecord): Pending[] {
    const schedule = schedRec.schedule;
    const subId = schedule.subscription === null ? null : idOf(schedule.subscription);
    schedule.status = 'released';
    schedule.released_at = state.now;
    schedule.released_subscription = subId;
    schedule.subscription = null;
    schedule.current_phase = null;
    const pending = [snap('subscription_schedule.released', schedule)];
    const rec = subId === null ? undefined : subscriptions.get(subId);
    if (rec && rec.sub.schedule !== null) {
      const before = structuredClone(rec.sub);
      rec.sub.schedule = null;
      pending.push(snap('customer.subscription.updated', rec.sub, changedFields(before, rec.sub)));
    }
    return pending;
  }

  /** What the schedule does at `at` for its subscription; returns the events to send after the renewal. */
  function scheduleStep(
    schedRec: ScheduleRecord,
    rec: SubscriptionRecord,
    at: number,
    atPeriodEnd: boolean,
  ): { pending: Pending[]; invoicePending: Pending[]; canceled: boolean } {
    const schedule = schedRec.schedule;
    schedRec.processedUntil = Math.max(schedRec.processedUntil, at);
    const phase = phaseAt(schedule, at);
    const pending: Pending[] = [];
    let invoicePending: Pending[] = [];
    if (phase && phase.start_date === at) {
      const targets = phaseTargets(rec.sub, phase);
      if (atPeriodEnd) {
        // At the boundary the old items are fully billed: switch without prorating.
        const oldKey = intervalKey(rec.sub.items.data);
        setItems(rec.sub, targets);
        if (intervalKey(rec.sub.items.data) !== oldKey) rec.sub.billing_cycle_anchor = at;
      } else {
        const behavior = phase.proration_behavior;
        const { invoiceDrafts } = applyItemChange(rec, targets, prorationOf(behavior), at);
        if (invoiceDrafts) {
          const inv = createInvoice(rec, invoiceDrafts, 'subscription_update', { start: at, end: at });
          const collected = finalizeAndCollect(inv, true);
          invoicePending = collected.pending;
          if (!collected.paid) rec.sub.status = 'past_due';
        }
      }
      refreshCurrentPhase(schedule);
      pending.push(snap('subscription_schedule.updated', schedule));
      return { pending, invoicePending, canceled: false };
    }
    const lastEnd = Math.max(...schedule.phases.map((p) => p.end_date));
    if (!phase && at >= lastEnd) {
      if (schedule.end_behavior === 'cancel') {
        schedule.status = 'completed';
        schedule.completed_at = at;
        schedule.current_phase = null;
        endSubscription(rec.sub, at);
        rec.sub.cancellation_details = { comment: null, feedback: null, feedback_option: null, reason: null };
        pending.push(snap('subscription_schedule.completed', schedule));
        return { pending, invoicePending, canceled: true };
      }
      // `release` (and `none`): the subscription carries on with the last phase's items.
      schedule.status = 'released';
      schedule.released_at = at;
      schedule.released_subscription = rec.sub.id;
      schedule.subscription = null;
      schedule.current_phase = null;
      rec.sub.schedule = null;
      pending.push(snap('subscription_schedule.released', schedule));
      return { pending, invoicePending, canceled: false };
    }
    refreshCurrentPhase(schedule);
    return { pending, invoicePending, canceled: false };
  }

  return {
    schedule: (id: string) => scheduleRecord(id).schedule,
    createSchedule,
    updateSchedule,
    releaseSchedule,
    refreshCurrentPhase,
    step: scheduleStep,
  };
}
