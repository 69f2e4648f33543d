import { type AuditEntry, auditAction } from '../audit/entry.js';
import type { Catalog } from '../catalog.js';
import type { Clock } from '../clock.js';
import type { Customers } from '../customers.js';
import { describeFailure } from '../failures.js';
import type { OwnerId } from '../ids.js';
import { UnknownCustomerError } from '../lifecycle.js';
import type { OwnerAccess } from '../owner/owner-access.js';
import { withVersion } from '../owner/snapshot.js';
import { CONTRACT_INVOICE_METADATA, type InvoiceInfo, type PaymentsGateway } from '../payments.js';
import { answer, commit, RETRY, write } from '../storage/commit.js';
import type { EntityTable, TransactionAction, TransactionFailedError } from '../store.js';
import {
  type ContractInvoice,
  type ContractPeriod,
  type ContractState,
  contractActive,
  contractPaymentStatus,
  periodsStartedBy,
} from './model.js';
import { contractRowAction, lockMoveFor } from './rows.js';
import { CONTRACT_INDEX_PARTITION } from './service.js';

/**
 * Billing enterprise contracts by Stripe invoice: one invoice per period, issued at the period's start
 * (the first on activation), recorded on the contract row; and the payment state of those invoices,
 * from Stripe's invoice events (re-read from Stripe, never taken from the event).
 *
 * The crash point between our commit and Stripe is covered both ways. Stripe first, then our record: a
 * crash after Stripe made the invoice leaves the period unrecorded, and the next attempt (the activation's
 * retry, the `contractInvoicing` timer) asks again with the same idempotency keys and, beyond Stripe's
 * 24 hours, finds the invoice by its metadata (`issueContractInvoice`): one invoice per period, always.
 * An invoice event that arrives before the record adds the record itself.
 */

export type InvoicingCause =
  | { readonly kind: 'timer'; readonly id: string }
  | { readonly kind: 'admin'; readonly id: string; readonly actor: string };

export type ContractInvoiceOutcome =
  | {
      readonly kind: 'contract_invoice';
      readonly ownerId: OwnerId;
      readonly contractId: string;
      readonly invoiceId: string;
      readonly changed: boolean;
    }
  | { readonly kind: 'duplicate'; readonly ownerId: OwnerId }
  | { readonly kind: 'ignored'; readonly reason: string };

export interface InvoicingReport {
  readonly owners: number;
  readonly issued: number;
  readonly refreshed: number;
  /** Index rows removed: the owner has no contract billed by invoice any more. */
  readonly dropped: number;
  readonly failures: ReadonlyArray<{
    readonly ownerId: OwnerId;
    readonly code: string;
    readonly message: string;
  }>;
}

interface Recorded {
  readonly changed: boolean;
  /** The event's marker existed: applied before. */
  readonly duplicate: boolean;
}

export interface ContractInvoicing {
  /** Issues every started period of the owner's active invoiced contract that has no invoice yet. */
  issueDue(ownerId: OwnerId, cause: InvoicingCause): Promise<{ readonly issued: number }>;
  /** The timer: every listed owner's due periods, and a re-read of their open invoices (a lost event). */
  sweep(runId: string): Promise<InvoicingReport>;
  /** A Stripe invoice event about a contract invoice (recognised by its metadata), applied once. */
  applyInvoiceEvent(
    invoice: InvoiceInfo,
    cause: { readonly id: string; readonly type: string },
  ): Promise<ContractInvoiceOutcome>;
}

/** Whether an invoice bills an enterprise contract (its metadata names one). */
export const isContractInvoice = (invoice: Pick<InvoiceInfo, 'metadata'>) =>
  typeof invoice.metadata[CONTRACT_INVOICE_METADATA.contract] === 'string';

function recordOf(period: ContractPeriod, invoice: InvoiceInfo): ContractInvoice {
  return {
    period: period.period,
    periodStart: period.start.toISOString(),
    periodEnd: period.end.toISOString(),
    invoiceId: invoice.id,
    status: invoice.status,
    amountDue: invoice.amountDue,
    amountPaid: invoice.amountPaid,
    currency: invoice.currency,
    dueAt: invoice.dueDate === null ? null : invoice.dueDate.toISOString(),
    attempts: invoice.attemptCount,
    hostedInvoiceUrl: invoice.hostedInvoiceUrl,
  };
}

const sameRecord = (a: ContractInvoice | undefined, b: ContractInvoice) =>
  a !== undefined && JSON.stringify(a) === JSON.stringify(b);

/** The contract with `record` in place of its period's (added in period order when new). */
function withRecord(contract: ContractState, record: ContractInvoice, at: string): ContractState {
  const others = contract.invoices.filter((i) => i.period !== record.period);
  return {
    ...contract,
    updatedAt: at,
    invoices: [...others, record].sort((a, b) => a.period - b.period),
  };
}

export function createContractInvoicing(deps: {
  readonly table: EntityTable;
  readonly owners: Pick<OwnerAccess, 'read'>;
  readonly customers: Customers;
  readonly payments: PaymentsGateway;
  readonly catalog: Catalog;
  readonly clock: Clock;
}): ContractInvoicing {
  const { table, owners, customers, payments, catalog, clock } = deps;

  /** Writes what Stripe says about one period's invoice onto the contract, once; audited when it changes. */
  function record(
    ownerId: OwnerId,
    contractId: string,
    period: ContractPeriod,
    invoice: () => Promise<InvoiceInfo>,
    audit: (at: string, before: ContractInvoice | undefined, after: ContractInvoice) => AuditEntry,
    marker?: TransactionAction,
  ): Promise<Recorded> {
    const unchanged: Recorded = { changed: false, duplicate: false };
    const duplicate: Recorded = { changed: false, duplicate: true };
    // The event's marker is action 0: if it exists, a copy of the event was applied already.
    const onConflict = (error: TransactionFailedError): Recorded | typeof RETRY =>
      marker && error.actionIndex === 0 && error.reason === 'exists' ? duplicate : RETRY;
    const nothingElse = () =>
      marker ? write<Recorded>([marker], () => unchanged, onConflict) : answer(unchanged);
    return commit<Recorded>(
      table,
      ownerId,
      async () => {
        const snapshot = await owners.read(ownerId);
        const contract = snapshot.contract?.state;
        // Stripe is read after our rows, so the version the commit is conditioned on guards the read too.
        const latest = await invoice();
        if (contract === undefined || contract.id !== contractId) {
          // The contract this invoice billed is gone or replaced: nothing of ours to update.
          return nothingElse();
        }
        const before = contract.invoices.find((i) => i.period === period.period);
        const after = recordOf(period, latest);
        if (sameRecord(before, after)) return nothingElse();
        const at = clock.now().toISOString();
        const next = withRecord(contract, after, at);
        const actions: TransactionAction[] = [
          ...(marker ? [marker] : []),
          contractRowAction(snapshot, next),
          auditAction(
            audit(at, before, after),
            `${contractId}.p${period.period}.${latest.status}.${marker?.rowKey ?? at}`,
          ),
          ...(await lockMoveFor(table, catalog, snapshot, next)),
        ];
        return write<Recorded>(
          withVersion(snapshot, actions),
          () => ({ changed: true, duplicate: false }),
          onConflict,
        );
      },
      { what: `recording invoice of ${contractId} period ${period.period} for ${ownerId}` },
    );
  }

  async function issueDue(ownerId: OwnerId, cause: InvoicingCause): Promise<{ readonly issued: number }> {
    const snapshot = await owners.read(ownerId);
    const contract = snapshot.contract?.state;
    const invoicing = contract?.terms.invoicing;
    if (!contractActive(contract, snapshot.readAt) || invoicing === undefined) return { issued: 0 };
    const due = periodsStartedBy(contract.terms, snapshot.readAt).filter(
      (p) => !contract.invoices.some((i) => i.period === p.period),
    );
    if (due.length === 0) return { issued: 0 };
    const customerId = await customers.ensure(ownerId);
    let issued = 0;
    for (const period of due) {
      const invoice = await payments.issueContractInvoice({
        customerId,
        ownerId,
        contractId: contract.id,
        period: period.period,
        periodStart: period.start,
        periodEnd: period.end,
        amount: invoicing.amount,
        currency: invoicing.currency,
        daysUntilDue: invoicing.daysUntilDue,
        description: `Enterprise contract ${contract.id}, ${period.start.toISOString().slice(0, 10)} to ${period.end.toISOString().slice(0, 10)}`,
        idempotencyKey: `contract-${contract.id}-p${period.period}`,
      });
      let first: InvoiceInfo | undefined = invoice;
      await record(
        ownerId,
        contract.id,
        period,
        // The invoice just issued, then (on a retried round) a fresh read.
        async () => {
          const now = first ?? (await payments.getInvoice(invoice.id));
          first = undefined;
          return now;
        },
        (at, before, after) => ({
          at,
          kind: 'contract_invoice_issued',
          actor:
            cause.kind === 'timer'
              ? { kind: 'timer', id: 'contractInvoicing' }
              : { kind: 'admin', id: cause.actor },
          cause: { kind: cause.kind, id: cause.id },
          before: before ?? null,
          after,
          details: { contractId: contract.id, invoiceId: after.invoiceId, period: after.period },
        }),
      );
      // Counted when this run asked Stripe for a period it found unbilled, even if the invoice's own event
      // recorded it first (Stripe made it once either way).
      issued++;
    }
    return { issued };
  }

  /** Re-reads the open invoices of the owner's contract from Stripe (an event that never came). */
  async function refresh(ownerId: OwnerId, runId: string): Promise<number> {
    const snapshot = await owners.read(ownerId);
    const contract = snapshot.contract?.state;
    if (contract === undefined) return 0;
    let refreshed = 0;
    for (const open of contract.invoices.filter((i) => i.status === 'open' || i.status === 'draft')) {
      const period = {
        period: open.period,
        start: new Date(open.periodStart),
        end: new Date(open.periodEnd),
      };
      const outcome = await record(
        ownerId,
        contract.id,
        period,
        () => payments.getInvoice(open.invoiceId),
        (at, before, after) => ({
          at,
          kind: 'contract_payment_changed',
          actor: { kind: 'reconciler', id: 'contractInvoicing' },
          cause: { kind: 'timer', id: runId },
          before: before ?? null,
          after,
          details: { contractId: contract.id, invoiceId: after.invoiceId, period: after.period },
        }),
      );
      if (outcome.changed) refreshed++;
    }
    return refreshed;
  }

  return {
    issueDue,

    async sweep(runId) {
      const listed = await table.list(CONTRACT_INDEX_PARTITION);
      let issued = 0;
      let refreshed = 0;
      let dropped = 0;
      const failures: Array<{ ownerId: OwnerId; code: string; message: string }> = [];
      for (const row of listed) {
        const ownerId = row.rowKey;
        try {
          issued += (await issueDue(ownerId, { kind: 'timer', id: runId })).issued;
          refreshed += await refresh(ownerId, runId);
          const snapshot = await owners.read(ownerId);
          const contract = snapshot.contract?.state;
          const owed =
            contract?.invoices.some((i) => i.status === 'open' || i.status === 'uncollectible') ?? false;
          const live =
            contract !== undefined &&
            contract.terms.billing === 'stripe_invoice' &&
            snapshot.readAt.getTime() < Date.parse(contract.terms.endsAt);
          // Listed while it may still bill or be owed; a later PUT of an invoiced contract lists it again.
          if (!live && !owed) {
            await table.delete(CONTRACT_INDEX_PARTITION, ownerId, row.etag);
            dropped++;
          }
        } catch (error) {
          // One owner's failure (Stripe or storage down, a corrupt row) is reported; the sweep goes on.
          const { code } = describeFailure(error);
          failures.push({ ownerId, code, message: error instanceof Error ? error.message : String(error) });
        }
      }
      return { owners: listed.length, issued, refreshed, dropped, failures };
    },

    async applyInvoiceEvent(first, cause) {
      const invoiceId = first.id;
      const ownerId = await customers.ownerOf(first.customerId);
      if (ownerId === undefined) throw new UnknownCustomerError(first.customerId);
      const named = first.metadata[CONTRACT_INVOICE_METADATA.owner];
      if (named !== undefined && named !== ownerId)
        return {
          kind: 'ignored',
          reason: `invoice ${invoiceId} names owner ${named}, but its customer is ${ownerId}'s`,
        };
      const contractId = first.metadata[CONTRACT_INVOICE_METADATA.contract] ?? '';
      const periodNumber = Number(first.metadata[CONTRACT_INVOICE_METADATA.period]);
      const snapshot = await owners.read(ownerId);
      const contract = snapshot.contract?.state;
      if (contract === undefined || contract.id !== contractId || !Number.isInteger(periodNumber))
        return {
          kind: 'ignored',
          reason: `invoice ${invoiceId} bills contract ${contractId}, which ${ownerId} no longer has`,
        };
      const period =
        periodsStartedBy(contract.terms, new Date(8.64e15)).find((p) => p.period === periodNumber) ??
        undefined;
      if (period === undefined)
        return {
          kind: 'ignored',
          reason: `invoice ${invoiceId} names period ${periodNumber}, outside contract ${contractId}`,
        };
      const marker: TransactionAction = {
        kind: 'create',
        rowKey: `event|${cause.id}`,
        props: { causeKind: 'event', type: cause.type, at: clock.now().toISOString() },
      };
      const outcome = await record(
        ownerId,
        contractId,
        period,
        () => payments.getInvoice(invoiceId),
        (at, before, after) => ({
          at,
          // An event can bring an invoice before the call that issued it has recorded it.
          kind: before === undefined ? 'contract_invoice_issued' : 'contract_payment_changed',
          actor: { kind: 'stripe', id: 'stripe' },
          cause: { kind: 'event', id: cause.id, type: cause.type },
          before: before ?? null,
          after,
          details: {
            contractId,
            invoiceId,
            period: periodNumber,
            paymentStatus: contractPaymentStatus(withRecord(contract, after, at), new Date(at)),
          },
        }),
        marker,
      );
      if (outcome.duplicate) return { kind: 'duplicate', ownerId };
      return { kind: 'contract_invoice', ownerId, contractId, invoiceId, changed: outcome.changed };
    },
  };
}
