import { cardDeclined, invalidRequest } from '../errors.js';
import {
  buildCheckoutLineItem,
  buildCheckoutSession,
  buildCustomer,
  buildSubscription,
  buildSubscriptionItem,
} from '../objects.js';
import type { CheckoutCreateParams } from '../params.js';
import { addInterval, idOf, ids, type WireCheckoutSession, type WireCustomer } from '../wire.js';
import { freshMetadata, type Pending, snap } from './changes.js';
import type { Customers } from './customers.js';
import type { Events } from './events.js';
import type { Invoices } from './invoices.js';
import type { Items } from './items.js';
import type { Payments } from './payments.js';
import type { Catalog } from './prices.js';
import { intervalKey, recurringOf, unitAmount } from './pricing.js';
import {
  AUTOMATIC,
  type EngineState,
  found,
  newestFirst,
  type RequestContext,
  type SessionRecord,
  type SubscriptionRecord,
} from './state.js';

export type Checkout = ReturnType<typeof createCheckout>;

/** Checkout Sessions: creation with Stripe's checks, the hosted page's payment, and expiry. */
export function createCheckout(
  state: EngineState,
  deps: {
    catalog: Catalog;
    customers: Customers;
    invoices: Invoices;
    items: Items;
    payments: Payments;
    events: Events;
  },
) {
  const { options, sessions, customers, failingCustomers, subscriptions } = state;
  const { price, productName } = deps.catalog;
  const { customer, paymentMethodOf } = deps.customers;
  const { createInvoice, finalizeAndCollect } = deps.invoices;
  const { cycleLines } = deps.items;
  const { recordPayment } = deps.payments;
  const { publish } = deps.events;

  function sessionRecord(id: string): SessionRecord {
    return found(sessions, 'checkout.session', id);
  }

  function createCheckoutSession(params: CheckoutCreateParams): WireCheckoutSession {
    if (params.customer !== undefined && params.customer_email !== undefined) {
      throw invalidRequest(
        'You may only specify one of these parameters: customer, customer_email.',
        'customer_email',
      );
    }
    if (params.ui_mode !== undefined && params.ui_mode !== 'hosted_page') {
      throw invalidRequest(
        `The sandbox serves only hosted Checkout pages (ui_mode hosted_page), not ${params.ui_mode}.`,
        'ui_mode',
      );
    }
    if (params.customer !== undefined) customer(params.customer, 'customer');
    const lineItems = params.line_items.map((line, i) => ({
      price: price(line.price, `line_items[${i}][price]`),
      quantity: line.quantity,
    }));
    const currencies = new Set(lineItems.map((line) => line.price.currency));
    if (currencies.size > 1) {
      throw invalidRequest('All prices on a Checkout Session must use the same currency.', 'line_items');
    }
    if (params.mode === 'subscription') {
      if (!lineItems.some((line) => line.price.recurring)) {
        throw invalidRequest(
          'You must provide at least one recurring price in `subscription` mode when using prices.',
          'line_items',
        );
      }
      const recurring = lineItems.filter((line) => line.price.recurring);
      if (new Set(recurring.map((line) => intervalKey([line]))).size > 1) {
        throw invalidRequest(
          'All recurring prices on a Checkout Session must share one interval.',
          'line_items',
        );
      }
    } else {
      const index = lineItems.findIndex((line) => line.price.recurring);
      if (index !== -1) {
        throw invalidRequest(
          'You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.',
          `line_items[${index}][price]`,
        );
      }
    }
    if (params.subscription_data && params.mode !== 'subscription') {
      throw invalidRequest(
        'You can only pass `subscription_data` in `subscription` mode.',
        'subscription_data',
      );
    }
    if (params.payment_intent_data && params.mode !== 'payment') {
      throw invalidRequest(
        'You can only pass `payment_intent_data` in `payment` mode.',
        'payment_intent_data',
      );
    }
    const id = ids.checkoutSession();
    const session = buildCheckoutSession({
      id,
      url: `${options.baseUrl()}/checkout/${id}`,
      mode: params.mode,
      customerId: params.customer ?? null,
      customerEmail: params.customer_email ?? null,
      amountTotal: lineItems.reduce((sum, line) => sum + unitAmount(line.price) * line.quantity, 0),
      currency: lineItems[0]?.price.currency ?? 'usd',
      metadata: freshMetadata(params.metadata),
      clientReferenceId: params.client_reference_id ?? null,
      successUrl: params.success_url ?? null,
      cancelUrl: params.cancel_url ?? null,
      allowPromotionCodes: params.allow_promotion_codes ?? null,
      created: state.now,
    });
    sessions.set(id, {
      session,
      lineItems,
      lineItemObjects: lineItems.map((line) =>
        buildCheckoutLineItem(line.price, line.quantity, productName(line.price)),
      ),
      subscriptionMetadata: freshMetadata(params.subscription_data?.metadata),
      paymentIntentMetadata: freshMetadata(params.payment_intent_data?.metadata),
    });
    return session;
  }

  /** The "Pay" button of the hosted page: charges the card, then creates what the session sells. */
  function payCheckout(id: string): WireCheckoutSession {
    const rec = sessionRecord(id);
    const session = rec.session;
    if (session.status === 'complete') {
      throw invalidRequest(
        'This Checkout Session has already been completed.',
        undefined,
        'checkout_session_completed',
      );
    }
    if (session.status === 'expired') {
      throw invalidRequest('This Checkout Session has expired.', undefined, 'checkout_session_expired');
    }
    const existingId = session.customer === null ? null : idOf(session.customer);
    if (existingId !== null && failingCustomers.has(existingId)) throw cardDeclined();

    const pending: Pending[] = [];
    let cust: WireCustomer;
    if (existingId !== null) cust = customer(existingId);
    else {
      cust = buildCustomer({
        id: ids.customer(),
        created: state.now,
        email: session.customer_email ?? null,
        name: null,
        description: null,
        phone: null,
        metadata: {},
      });
      customers.set(cust.id, cust);
      pending.push(snap('customer.created', cust));
    }
    const pm = paymentMethodOf(cust.id);
    cust.invoice_settings.default_payment_method = cust.invoice_settings.default_payment_method ?? pm;

    if (session.mode === 'subscription') {
      const subId = ids.subscription();
      const recurring = rec.lineItems.filter((line) => line.price.recurring);
      const first = recurring[0];
      if (!first) throw new Error('subscription checkout without a recurring price');
      const { interval, count } = recurringOf(first.price);
      const end = addInterval(state.now, interval, count);
      const sub = buildSubscription({
        id: subId,
        customerId: cust.id,
        currency: first.price.currency,
        created: state.now,
        items: recurring.map((line) =>
          buildSubscriptionItem({
            subscriptionId: subId,
            price: line.price,
            quantity: line.quantity,
            created: state.now,
            periodStart: state.now,
            periodEnd: end,
          }),
        ),
        metadata: { ...rec.subscriptionMetadata },
        defaultPaymentMethod: pm,
      });
      const subRec: SubscriptionRecord = { sub, pending: [] };
      subscriptions.set(subId, subRec);
      const inv = createInvoice(subRec, cycleLines(sub), 'subscription_create', {
        start: state.now,
        end: state.now,
      });
      pending.push(snap('customer.subscription.created', sub));
      const collected = finalizeAndCollect(inv, true);
      pending.push(...collected.pending);
      session.subscription = subId;
      session.invoice = inv.id;
    } else {
      const { intent } = recordPayment({
        amount: session.amount_total ?? 0,
        currency: session.currency ?? 'usd',
        customerId: cust.id,
        metadata: rec.paymentIntentMetadata,
      });
      pending.push(snap('payment_intent.succeeded', intent));
      session.payment_intent = intent.id;
    }
    session.customer = cust.id;
    session.status = 'complete';
    session.payment_status = 'paid';
    session.customer_details = {
      address: null,
      business_name: null,
      email: cust.email,
      individual_name: null,
      name: cust.name ?? null,
      phone: null,
      tax_exempt: 'none',
      tax_ids: [],
    };
    pending.push(snap('checkout.session.completed', session));
    publish(AUTOMATIC, pending);
    return session;
  }

  function expireSession(id: string, ctx: RequestContext): WireCheckoutSession {
    const session = sessionRecord(id).session;
    if (session.status !== 'open') {
      // Stripe's answer for a complete or already expired session: a 400, nothing changes.
      throw invalidRequest(
        `Only Checkout Sessions with a status in [open] can be expired. This Checkout Session has a status of ${session.status ?? 'open'}.`,
      );
    }
    session.status = 'expired';
    session.url = null;
    publish(ctx, [snap('checkout.session.expired', session)]);
    return session;
  }

  return {
    session: (id: string) => sessionRecord(id).session,
    sessionLines: (id: string) => sessionRecord(id).lineItems,
    sessions: () => newestFirst([...sessions.values()].map((rec) => rec.session)),
    createCheckoutSession,
    payCheckout,
    expireSession,
  };
}
