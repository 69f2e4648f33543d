import { createCheckout } from './checkout.js';
import { createClock } from './clock.js';
import { createCustomers } from './customers.js';
import { createEvents } from './events.js';
import { createInvoices } from './invoices.js';
import { createItems } from './items.js';
import { createLookup } from './lookup.js';
import { createPayments } from './payments.js';
import { createPortal } from './portal.js';
import { createCatalog } from './prices.js';
import { createSchedules } from './schedules.js';
import { createSentInvoices } from './sent-invoices.js';
import { createState, type EngineOptions } from './state.js';
import { createSubscriptions } from './subscriptions.js';

export { AUTOMATIC, type EngineOptions, type RequestContext } from './state.js';
export type { ForcedStatus } from './subscriptions.js';

export type Engine = ReturnType<typeof createEngine>;

/**
 * The sandbox's state and Stripe's billing rules over it: customers, catalog, Checkout, subscriptions
 * with prorations and schedules, invoices and dunning, and the clock that drives renewals. Every state
 * change publishes events with snapshots taken at the moment of the change.
 *
 * One module per resource, all over one shared state; each gets only the modules it calls, in the order
 * below (no cycles), and this is the only surface the HTTP server sees.
 */
export function createEngine(options: EngineOptions) {
  const state = createState(options);
  const events = createEvents(state);
  const catalog = createCatalog(state);
  const customers = createCustomers(state, events);
  const payments = createPayments(state, { customers, events });
  const invoices = createInvoices(state, { customers, payments, events });
  const items = createItems(state, catalog);
  const checkout = createCheckout(state, { catalog, customers, invoices, items, payments, events });
  const portal = createPortal(state, { customers, events });
  const subscriptions = createSubscriptions(state, { catalog, invoices, items, events });
  const schedules = createSchedules(state, { catalog, invoices, items, subscriptions, events });
  const sentInvoices = createSentInvoices(state, { customers, invoices, events });
  const clock = createClock(state, { invoices, items, schedules, sentInvoices, events });

  return {
    now: clock.now,
    lookup: createLookup(state),
    events: events.all,
    event: events.event,
    customer: (id: string) => customers.customer(id),
    customersById: customers.byId,
    product: catalog.product,
    price: (id: string) => catalog.price(id),
    prices: catalog.prices,
    productName: catalog.productName,
    session: checkout.session,
    sessionLines: checkout.sessionLines,
    portalSession: portal.portalSession,
    subscription: subscriptions.subscription,
    subscriptions: subscriptions.subscriptions,
    schedule: schedules.schedule,
    invoice: invoices.invoice,
    invoices: invoices.invoices,
    sessions: checkout.sessions,
    paymentIntent: payments.paymentIntent,
    charge: payments.charge,
    dispute: payments.dispute,
    disputes: payments.disputes,
    refunds: payments.refunds,
    invoicePayments: invoices.invoicePayments,
    expireSession: checkout.expireSession,
    createRefund: payments.createRefund,
    disputeCharge: payments.disputeCharge,
    closeDispute: payments.closeDispute,
    createCustomer: customers.createCustomer,
    createCheckoutSession: checkout.createCheckoutSession,
    payCheckout: checkout.payCheckout,
    createPortalSession: portal.createPortalSession,
    updateSubscription: subscriptions.updateSubscription,
    previewInvoice: subscriptions.previewInvoice,
    cancelSubscription: subscriptions.cancelSubscription,
    createSchedule: schedules.createSchedule,
    updateSchedule: schedules.updateSchedule,
    releaseSchedule: schedules.releaseSchedule,
    advanceTo: clock.advanceTo,
    setPaymentMethod: customers.setPaymentMethod,
    retryInvoice: invoices.retryInvoice,
    createInvoice: sentInvoices.createOneOff,
    createInvoiceItem: sentInvoices.addItem,
    finalizeInvoice: sentInvoices.finalizeOneOff,
    payInvoice: sentInvoices.pay,
    markInvoiceUncollectible: sentInvoices.markUncollectible,
    voidInvoice: sentInvoices.voidInvoice,
    forceStatus: subscriptions.forceStatus,
    markDelivered: events.markDelivered,
  };
}
