import type { z } from 'zod';
import { invalidRequest } from '../errors.js';
import { buildInvoiceItemLine, buildOneOffInvoice } from '../objects.js';
import type { invoiceCreate, invoiceFinalize, invoiceItemCreate } from '../params.js';
import { DAY, idOf, ids, type WireInvoice } from '../wire.js';
import { freshMetadata, type Pending, snap } from './changes.js';
import type { Customers } from './customers.js';
import type { Events } from './events.js';
import type { Invoices } from './invoices.js';
import { AUTOMATIC, type EngineState, found, type RequestContext } from './state.js';

export type SentInvoices = ReturnType<typeof createSentInvoices>;

/**
 * One-off invoices made through the API (`POST /v1/invoices`, `/v1/invoiceitems`, `/finalize`), as the
 * gateway issues an enterprise contract's periods. With `collection_method: send_invoice` the customer
 * pays by themselves (the hosted page, or `/_sandbox/invoices/:id/pay`): nothing is charged
 * automatically, finalizing sets `due_date` from `days_until_due`, and once the sandbox clock passes it
 * an open invoice sends `invoice.overdue` (once). An operator may mark it uncollectible or void it.
 */
export function createSentInvoices(
  state: EngineState,
  deps: { customers: Customers; invoices: Invoices; events: Events },
) {
  const { invoices, overdueSent } = state;
  const { publish } = deps.events;

  /** `days_until_due` of each draft, until finalizing turns it into `due_date`. */
  const daysUntilDue = new Map<string, number | null>();

  function createOneOff(p: z.infer<typeof invoiceCreate>, ctx: RequestContext): WireInvoice {
    const customer = deps.customers.customer(p.customer, 'customer');
    const collectionMethod = p.collection_method ?? 'charge_automatically';
    if (collectionMethod === 'send_invoice' && p.days_until_due === undefined)
      throw invalidRequest('Missing required param: days_until_due.', 'days_until_due');
    if (collectionMethod !== 'send_invoice' && p.days_until_due !== undefined)
      throw invalidRequest(
        'days_until_due can only be set with collection_method send_invoice.',
        'days_until_due',
      );
    if (p.pending_invoice_items_behavior === 'include')
      throw invalidRequest(
        'The sandbox models no pending invoice items: pass pending_invoice_items_behavior=exclude.',
      );
    const inv = buildOneOffInvoice({
      id: ids.invoice(),
      customer,
      currency: p.currency ?? 'usd',
      created: state.now,
      collectionMethod,
      daysUntilDue: p.days_until_due ?? null,
      autoAdvance: p.auto_advance ?? false,
      description: p.description ?? null,
      metadata: freshMetadata(p.metadata),
    });
    daysUntilDue.set(inv.id, p.days_until_due ?? null);
    invoices.set(inv.id, inv);
    publish(ctx, [snap('invoice.created', inv)]);
    return inv;
  }

  function addItem(p: z.infer<typeof invoiceItemCreate>, ctx: RequestContext) {
    const inv = found(invoices, 'invoice', p.invoice, 'invoice');
    if (inv.status !== 'draft')
      throw invalidRequest(`Invoice ${inv.id} is ${inv.status}; items go on drafts.`, 'invoice');
    if (idOf(inv.customer ?? '') !== p.customer)
      throw invalidRequest(`Invoice ${inv.id} belongs to another customer.`, 'invoice');
    if (p.currency !== inv.currency) throw invalidRequest(`The invoice is in ${inv.currency}.`, 'currency');
    const itemId = ids.invoiceItem();
    const line = buildInvoiceItemLine({
      invoiceId: inv.id,
      invoiceItemId: itemId,
      amount: p.amount,
      currency: p.currency,
      description: p.description ?? null,
      periodStart: p.period?.start ?? state.now,
      periodEnd: p.period?.end ?? state.now,
      metadata: freshMetadata(p.metadata),
    });
    inv.lines.data.push(line);
    const total = inv.lines.data.reduce((sum, l) => sum + l.amount, 0);
    inv.subtotal = total;
    inv.subtotal_excluding_tax = total;
    inv.total = total;
    inv.total_excluding_tax = total;
    inv.amount_due = Math.max(0, total);
    inv.amount_remaining = inv.amount_due;
    publish(ctx, [snap('invoice.updated', inv)]);
    return {
      id: itemId,
      object: 'invoiceitem' as const,
      amount: p.amount,
      currency: p.currency,
      customer: p.customer,
      date: state.now,
      description: p.description ?? null,
      invoice: inv.id,
      livemode: false,
      metadata: freshMetadata(p.metadata),
      period: { start: line.period.start, end: line.period.end },
    };
  }

  function finalizeOneOff(id: string, p: z.infer<typeof invoiceFinalize>, ctx: RequestContext): WireInvoice {
    const inv = found(invoices, 'invoice', id);
    if (inv.status !== 'draft') throw invalidRequest(`This invoice is already finalized (${inv.status}).`);
    deps.invoices.finalize(inv);
    if (p.auto_advance !== undefined) inv.auto_advance = p.auto_advance;
    const days = daysUntilDue.get(id);
    if (inv.collection_method === 'send_invoice' && days !== undefined && days !== null)
      inv.due_date = state.now + days * DAY;
    const pending: Pending[] = [snap('invoice.finalized', inv)];
    if (inv.amount_due === 0) {
      deps.invoices.markPaid(inv);
      pending.push(snap('invoice.paid', inv), snap('invoice.payment_succeeded', inv));
    }
    publish(ctx, pending);
    return inv;
  }

  /** The customer pays a sent invoice (also one marked uncollectible, as Stripe allows) with their card. */
  function pay(id: string): WireInvoice {
    const inv = found(invoices, 'invoice', id);
    if (inv.status !== 'open' && inv.status !== 'uncollectible')
      throw invalidRequest(
        `Invoice ${id} is ${inv.status ?? 'draft'}; only open or uncollectible invoices can be paid.`,
      );
    const paid = deps.invoices.attemptPayment(inv);
    publish(
      AUTOMATIC,
      paid
        ? [snap('invoice.paid', inv), snap('invoice.payment_succeeded', inv)]
        : [snap('invoice.payment_failed', inv)],
    );
    return inv;
  }

  function markUncollectible(id: string): WireInvoice {
    const inv = found(invoices, 'invoice', id);
    if (inv.status !== 'open')
      throw invalidRequest(
        `Invoice ${id} is ${inv.status ?? 'draft'}; only open invoices can be marked uncollectible.`,
      );
    inv.status = 'uncollectible';
    inv.auto_advance = false;
    inv.status_transitions.marked_uncollectible_at = state.now;
    publish(AUTOMATIC, [snap('invoice.marked_uncollectible', inv)]);
    return inv;
  }

  function voidInvoice(id: string): WireInvoice {
    const inv = found(invoices, 'invoice', id);
    if (inv.status !== 'open' && inv.status !== 'uncollectible')
      throw invalidRequest(
        `Invoice ${id} is ${inv.status ?? 'draft'}; only open or uncollectible invoices can be voided.`,
      );
    inv.status = 'void';
    inv.auto_advance = false;
    inv.amount_remaining = 0;
    inv.status_transitions.voided_at = state.now;
    publish(AUTOMATIC, [snap('invoice.voided', inv)]);
    return inv;
  }

  /** Open sent invoices whose due date is at or before `limit` and that have not said so yet. */
  function overdueBy(limit: number): Array<{ at: number; inv: WireInvoice }> {
    const out: Array<{ at: number; inv: WireInvoice }> = [];
    for (const inv of invoices.values()) {
      if (inv.status !== 'open' || inv.collection_method !== 'send_invoice' || inv.due_date === null)
        continue;
      if (inv.due_date <= limit && !overdueSent.has(inv.id)) out.push({ at: inv.due_date, inv });
    }
    return out;
  }

  /** The due date passed unpaid: Stripe marks the customer delinquent and sends `invoice.overdue`. */
  function markOverdue(inv: WireInvoice): Pending[] {
    overdueSent.add(inv.id);
    const cust = state.customers.get(idOf(inv.customer ?? ''));
    if (cust) cust.delinquent = true;
    return [snap('invoice.overdue', inv)];
  }

  return {
    createOneOff,
    addItem,
    finalizeOneOff,
    pay,
    markUncollectible,
    voidInvoice,
    overdueBy,
    markOverdue,
  };
}
