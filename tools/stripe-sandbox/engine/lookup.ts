import type { ObjectLookup } from '../expand.js';
import { list } from '../wire.js';
import type { EngineState } from './state.js';

/** How `expand[]` finds objects by id, and the lists Stripe shows only when expanded. */
export function createLookup(state: EngineState): ObjectLookup {
  const { subscriptions, schedules, sessions } = state;

  function findObject(id: string): unknown {
    const stores: ReadonlyArray<Map<string, unknown>> = [
      state.customers,
      state.products,
      state.prices,
      state.portalSessions,
      state.invoices,
      state.paymentIntents,
      state.charges,
      state.refunds,
      state.disputes,
      state.invoicePayments,
      state.eventsById,
    ];
    for (const store of stores) {
      const found = store.get(id);
      if (found !== undefined) return structuredClone(found);
    }
    const sub = subscriptions.get(id);
    if (sub) return structuredClone(sub.sub);
    const schedule = schedules.get(id);
    if (schedule) return structuredClone(schedule.schedule);
    const session = sessions.get(id);
    if (session) return structuredClone(session.session);
    return undefined;
  }

  return {
    byId: findObject,
    virtual(owner, field) {
      if (owner.object === 'checkout.session' && field === 'line_items' && typeof owner.id === 'string') {
        const record = sessions.get(owner.id);
        if (!record) return undefined;
        return list(structuredClone(record.lineItemObjects), `/v1/checkout/sessions/${owner.id}/line_items`);
      }
      return undefined;
    },
  };
}
