import { type InvoiceRecord, invoiceRowKey } from './billing-actions.js';
import type { ContractInvoiceOutcome, ContractInvoicing } from './contracts/invoicing.js';
import { isContractInvoice } from './contracts/invoicing.js';
import type { CreditPurchaseOutcome, CreditPurchases } from './credit-purchases.js';
import { type EventRef, EventShapeError, subjectOf } from './event-ref.js';
import type { SubscriptionSync, SyncOutcome } from './lifecycle.js';
import type { InvoiceInfo, PaymentsGateway } from './payments.js';
import type { TransactionAction } from './store.js';

export function invoiceRecord(invoice: InvoiceInfo): InvoiceRecord {
  return {
    id: invoice.id,
    number: invoice.number,
    status: invoice.status,
    currency: invoice.currency,
    amountDue: invoice.amountDue,
    amountPaid: invoice.amountPaid,
    attemptCount: invoice.attemptCount,
    billingReason: invoice.billingReason,
    created: invoice.created.toISOString(),
    periodStart: invoice.periodStart.toISOString(),
    periodEnd: invoice.periodEnd.toISOString(),
    hostedInvoiceUrl: invoice.hostedInvoiceUrl,
    subscriptionId: invoice.subscriptionId,
  };
}

export type ProcessOutcome =
  | SyncOutcome
  | CreditPurchaseOutcome
  | ContractInvoiceOutcome
  | { readonly kind: 'ignored'; readonly reason: string };

export interface EventProcessor {
  /** Applies one queued event, reading what it needs from Stripe. Safe to repeat. */
  process(ref: EventRef): Promise<ProcessOutcome>;
}

export function createEventProcessor(deps: {
  readonly sync: SubscriptionSync;
  readonly payments: PaymentsGateway;
  readonly purchases: CreditPurchases;
  readonly contracts: Pick<ContractInvoicing, 'applyInvoiceEvent'>;
}): EventProcessor {
  const { sync, payments, purchases, contracts } = deps;
  const customerOf = (ref: EventRef): string => {
    if (ref.customerId === null) {
      throw new EventShapeError('event_invalid', `Event ${ref.eventId} (${ref.type}) names no customer`);
    }
    return ref.customerId;
  };
  return {
    async process(ref) {
      const cause = { kind: 'event', id: ref.eventId, type: ref.type } as const;
      switch (subjectOf(ref.type)) {
        case 'subscription':
        case 'schedule':
          return sync.syncCustomer(customerOf(ref), cause);
        case 'invoice': {
          // An enterprise contract's invoice (named by its metadata) moves the contract's payment state,
          // not a subscription's. Only contract invoices are `send_invoice`, so only they can be overdue.
          const invoice = await payments.getInvoice(ref.objectId);
          if (isContractInvoice(invoice)) return contracts.applyInvoiceEvent(invoice, cause);
          if (ref.type === 'invoice.overdue')
            return { kind: 'ignored', reason: `invoice ${invoice.id} bills no contract` };
          // The invoice too is re-read, inside the sync's attempt, so a late `invoice.payment_failed`
          // cannot overwrite a later `paid`.
          const invoiceRow = async (): Promise<TransactionAction[]> => {
            const invoice = invoiceRecord(await payments.getInvoice(ref.objectId));
            return [
              {
                kind: 'upsert',
                rowKey: invoiceRowKey(invoice.id),
                props: { json: JSON.stringify(invoice), created: invoice.created, status: invoice.status },
              },
            ];
          };
          return sync.syncCustomer(customerOf(ref), cause, invoiceRow);
        }
        case 'checkout': {
          const session = await payments.getCheckoutSession(ref.objectId);
          if (session.customerId === null) {
            return { kind: 'ignored', reason: `checkout ${session.id} has no customer: not one of ours` };
          }
          const outcome = await sync.syncCustomer(session.customerId, cause);
          // The grant has its own marker (the session id), so a redelivered event grants nothing twice.
          if (session.mode === 'payment') return purchases.grantForSession(outcome.ownerId, session, cause);
          return outcome;
        }
        case 'charge':
          return purchases.reconcileCharge(ref.objectId, cause);
        case 'dispute': {
          const dispute = await payments.getDispute(ref.objectId);
          return purchases.reconcileCharge(dispute.chargeId, cause);
        }
      }
    },
  };
}
