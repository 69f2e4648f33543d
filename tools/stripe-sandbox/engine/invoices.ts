import { invalidRequest } from '../errors.js';
import {
  buildInvoice,
  buildInvoiceLine,
  buildInvoicePayment,
  type InvoiceBillingReason,
  type LineDraft,
} from '../objects.js';
import { DAY, idOf, ids, type WireInvoice } from '../wire.js';
import { changedFields, type Pending, snap } from './changes.js';
import type { Customers } from './customers.js';
import type { Events } from './events.js';
import type { Payments } from './payments.js';
import { AUTOMATIC, type EngineState, found, newestFirst, type SubscriptionRecord } from './state.js';

const RETRY_DELAY = 3 * DAY;
const MAX_AUTOMATIC_ATTEMPTS = 4;

export type Invoices = ReturnType<typeof createInvoices>;

/** Subscription invoices: drafting, finalizing, automatic collection with dunning retries, invoice payments. */
export function createInvoices(
  state: EngineState,
  deps: { customers: Customers; payments: Payments; events: Events },
) {
  const { options, invoices, invoicePayments, customers, failingCustomers, subscriptions } = state;
  const { customer } = deps.customers;
  const { recordPayment } = deps.payments;
  const { publish } = deps.events;

  function invoice(id: string): WireInvoice {
    return found(invoices, 'invoice', id);
  }

  /** An invoice of `drafts` for the subscription, built but neither stored nor linked to it. */
  function draftInvoice(
    rec: SubscriptionRecord,
    drafts: readonly LineDraft[],
    reason: InvoiceBillingReason,
    period: { start: number; end: number },
    id: string = ids.invoice(),
  ): WireInvoice {
    const sub = rec.sub;
    return buildInvoice({
      id,
      customer: customer(idOf(sub.customer)),
      subscriptionId: sub.id,
      subscriptionMetadata: { ...sub.metadata },
      currency: sub.currency,
      created: state.now,
      periodStart: period.start,
      periodEnd: period.end,
      billingReason: reason,
      lines: drafts.map((draft) => buildInvoiceLine(draft, id, sub.id)),
    });
  }

  function createInvoice(
    rec: SubscriptionRecord,
    drafts: readonly LineDraft[],
    reason: 'subscription_create' | 'subscription_cycle' | 'subscription_update',
    period: { start: number; end: number },
  ): WireInvoice {
    const inv = draftInvoice(rec, drafts, reason, period);
    invoices.set(inv.id, inv);
    rec.sub.latest_invoice = inv.id;
    return inv;
  }

  function finalize(inv: WireInvoice): void {
    const cust = customer(idOf(inv.customer ?? ''));
    const sequenceNumber = cust.next_invoice_sequence ?? 1;
    cust.next_invoice_sequence = sequenceNumber + 1;
    inv.number = `${cust.invoice_prefix ?? 'SANDBOX'}-${String(sequenceNumber).padStart(4, '0')}`;
    inv.status = 'open';
    inv.status_transitions.finalized_at = state.now;
    inv.effective_at = state.now;
    inv.ending_balance = 0;
    inv.hosted_invoice_url = `${options.baseUrl()}/invoice/${inv.id}`;
    inv.webhooks_delivered_at = state.now;
  }

  function markPaid(inv: WireInvoice): void {
    if (inv.amount_due > 0) {
      // Since API 2025-03-31 an invoice names no payment intent or charge: its payments are
      // `invoice_payment` objects (GET /v1/invoice_payments?invoice=…), each naming the payment intent.
      const { intent } = recordPayment({
        amount: inv.amount_due,
        currency: inv.currency,
        customerId: idOf(inv.customer ?? ''),
        metadata: {},
      });
      const payment = buildInvoicePayment({
        invoiceId: inv.id,
        amount: inv.amount_due,
        currency: inv.currency,
        paymentIntentId: intent.id,
        created: state.now,
      });
      invoicePayments.set(payment.id, payment);
    }
    inv.status = 'paid';
    inv.amount_paid = inv.amount_due;
    inv.amount_remaining = 0;
    inv.status_transitions.paid_at = state.now;
    inv.next_payment_attempt = null;
    const cust = customers.get(idOf(inv.customer ?? ''));
    if (cust) cust.delinquent = false;
  }

  /** One automatic payment attempt with the customer's card; true when the invoice is now paid. */
  function attemptPayment(inv: WireInvoice): boolean {
    const customerId = idOf(inv.customer ?? '');
    if (inv.amount_due === 0) {
      markPaid(inv);
      return true;
    }
    inv.attempted = true;
    inv.attempt_count += 1;
    if (failingCustomers.has(customerId)) {
      inv.next_payment_attempt = inv.attempt_count < MAX_AUTOMATIC_ATTEMPTS ? state.now + RETRY_DELAY : null;
      const cust = customers.get(customerId);
      if (cust) cust.delinquent = true;
      return false;
    }
    markPaid(inv);
    return true;
  }

  /** Finalizes a fresh draft and collects it, capturing the events Stripe sends along the way. */
  function finalizeAndCollect(inv: WireInvoice, attempt: boolean): { paid: boolean; pending: Pending[] } {
    const pending = [snap('invoice.created', inv)];
    finalize(inv);
    pending.push(snap('invoice.finalized', inv));
    if (!attempt) return { paid: false, pending };
    const paid = attemptPayment(inv);
    if (paid) pending.push(snap('invoice.paid', inv), snap('invoice.payment_succeeded', inv));
    else pending.push(snap('invoice.payment_failed', inv));
    return { paid, pending };
  }

  function openInvoicesOf(subId: string): WireInvoice[] {
    return [...invoices.values()].filter(
      (inv) => inv.status === 'open' && inv.parent?.subscription_details?.subscription === subId,
    );
  }

  function retryInvoice(id: string): WireInvoice {
    const inv = invoice(id);
    if (inv.status !== 'open') {
      throw invalidRequest(`Invoice ${id} is ${inv.status ?? 'draft'}; only open invoices can be retried.`);
    }
    const paid = attemptPayment(inv);
    const pending: Pending[] = [];
    if (!paid) {
      pending.push(snap('invoice.payment_failed', inv));
      publish(AUTOMATIC, pending);
      return inv;
    }
    pending.push(snap('invoice.paid', inv), snap('invoice.payment_succeeded', inv));
    const subId = inv.parent?.subscription_details?.subscription;
    const rec = subId === undefined ? undefined : subscriptions.get(idOf(subId));
    if (
      rec &&
      (rec.sub.status === 'past_due' || rec.sub.status === 'unpaid') &&
      openInvoicesOf(rec.sub.id).length === 0
    ) {
      const before = structuredClone(rec.sub);
      rec.sub.status = 'active';
      pending.push(snap('customer.subscription.updated', rec.sub, changedFields(before, rec.sub)));
    }
    publish(AUTOMATIC, pending);
    return inv;
  }

  return {
    invoice,
    invoices: () => newestFirst(invoices.values()),
    invoicePayments: () => newestFirst(invoicePayments.values()),
    draftInvoice,
    createInvoice,
    finalize,
    finalizeAndCollect,
    markPaid,
    attemptPayment,
    openInvoicesOf,
    retryInvoice,
  };
}
