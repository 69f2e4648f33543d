import { buildPortalSession } from '../objects.js';
import { ids, type WirePortalSession } from '../wire.js';
import { snap } from './changes.js';
import type { Customers } from './customers.js';
import type { Events } from './events.js';
import { type EngineState, found, type RequestContext } from './state.js';

export type Portal = ReturnType<typeof createPortal>;

/** Billing portal sessions: created for a customer, served as the sandbox's portal page. */
export function createPortal(state: EngineState, deps: { customers: Customers; events: Events }) {
  const { options, portalSessions, portalConfiguration } = state;
  const { customer } = deps.customers;
  const { publish } = deps.events;

  function createPortalSession(params: { customer: string; return_url?: string }, ctx: RequestContext) {
    customer(params.customer, 'customer');
    const id = ids.portalSession();
    const session = buildPortalSession({
      id,
      url: `${options.baseUrl()}/portal/${id}`,
      configuration: portalConfiguration,
      customerId: params.customer,
      returnUrl: params.return_url ?? null,
      created: state.now,
    });
    portalSessions.set(id, session);
    publish(ctx, [snap('billing_portal.session.created', session)]);
    return session;
  }

  return {
    createPortalSession,
    portalSession: (id: string): WirePortalSession => found(portalSessions, 'billing_portal.session', id),
  };
}
