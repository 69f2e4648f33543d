import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { type ContractTerms, contractTermsSchema } from '../../src/billing/contracts/model.js';
import {
  CONTRACT_INVOICE_METADATA,
  type InvoiceInfo,
  type PaymentsGateway,
} from '../../src/billing/payments.js';
import type { EventQueue } from '../../src/billing/queue.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from './env.js';
import { gatewayDouble } from './gateway-double.js';
import { manualClock } from './memory.js';
import { type FailureMode, faultyTables, InjectedFailure } from './tables.js';

/** Enterprise contracts in unit and integration tests: terms, Stripe's side in memory, and crash runs. */

export const NOW = '2026-11-15T12:00:00.000Z';

export const terms = (over: Partial<ContractTerms> = {}): ContractTerms =>
  contractTermsSchema.parse({
    plan: 'enterprise',
    limits: { workflows_per_org: 20 },
    flags: { white_label: false },
    seats: 40,
    startsAt: '2026-11-01T00:00:00.000Z',
    endsAt: '2027-11-01T00:00:00.000Z',
    billing: 'manual',
    ...over,
  });

export const invoiced = (over: Partial<ContractTerms> = {}) =>
  terms({
    billing: 'stripe_invoice',
    invoicing: { amount: 250_000, currency: 'usd', interval: 'month', daysUntilDue: 30, graceDays: 7 },
    ...over,
  });

/** Stripe's side of contract invoicing, in memory, idempotent as Stripe is (by contract and period). */
export function fakeStripe() {
  const invoices = new Map<string, InvoiceInfo>();
  const issued: string[] = [];
  const payments: PaymentsGateway = gatewayDouble({
    createCustomer: async ({ ownerId }) => ({ id: `cus_${ownerId}` }),
    async getInvoice(id) {
      const found = invoices.get(id);
      if (!found) throw new Error(`no invoice ${id}`);
      return found;
    },
    async issueContractInvoice(request) {
      const id = `in_${request.contractId}_${request.period}`;
      const existing = invoices.get(id);
      if (existing) return existing;
      issued.push(id);
      const created = new Date(NOW);
      const invoice: InvoiceInfo = {
        id,
        customerId: request.customerId,
        subscriptionId: null,
        status: 'open',
        number: null,
        currency: request.currency,
        amountDue: request.amount,
        amountPaid: 0,
        attemptCount: 0,
        billingReason: 'manual',
        created,
        periodStart: request.periodStart,
        periodEnd: request.periodEnd,
        hostedInvoiceUrl: null,
        collectionMethod: 'send_invoice',
        dueDate: new Date(created.getTime() + request.daysUntilDue * 86_400_000),
        metadata: {
          [CONTRACT_INVOICE_METADATA.owner]: request.ownerId,
          [CONTRACT_INVOICE_METADATA.contract]: request.contractId,
          [CONTRACT_INVOICE_METADATA.period]: String(request.period),
        },
      };
      invoices.set(id, invoice);
      return invoice;
    },
  });
  return { payments, invoices, issued };
}

const noQueue: EventQueue = {
  name: 'unused',
  send: async () => undefined,
  ping: async () => undefined,
};

/** The real wiring over `tables`, with Stripe's side from `fakeStripe`. */
export function servicesWith(
  tables: Services['tables'],
  payments: PaymentsGateway,
  clock = manualClock(NOW),
) {
  const config = loadConfig({ BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true', ...baseTestEnv });
  return createServices(config, { clock, tables, payments, queue: noQueue });
}

export const memory = (): Services['tables'] => ({
  directory: createMemoryTable('directory'),
  billing: createMemoryTable('billing'),
});

export const admin = (requestId: string) => ({ actor: 'ops-ann', reason: 'Order form 114', requestId });

/**
 * Activation of an invoiced contract (the PUT: the contract's commit, then its first invoice), with the
 * n-th storage call failing (before it takes effect, or after with its answer lost), then the same request
 * again (or the timer), for every n until a run makes fewer calls than n. After each: one contract, one audit row of the
 * change, one invoice recorded and one issued in Stripe, and nothing left for the timer.
 */
export async function crashActivation(
  makeTables: () => Services['tables'],
  mode: FailureMode,
  /**
   * Who finishes: the operator sending the same PUT again, or the `contractInvoicing` timer when the
   * contract was stored (only its invoice was lost; a contract never stored needs the PUT again).
   */
  recovery: 'request' | 'timer' = 'request',
): Promise<{ readonly crashed: number; readonly failures: string[] }> {
  const failures: string[] = [];
  let crashed = 0;
  for (let n = 1; n < 100; n++) {
    const { tables, faults } = faultyTables(makeTables());
    const stripe = fakeStripe();
    const services = servicesWith(tables, stripe.payments);
    const activate = async () => {
      await services.contracts.set({ ownerId: 'u-c', terms: invoiced(), ...admin('req-1') });
      await services.contractInvoicing.issueDue('u-c', { kind: 'admin', id: 'req-1', actor: 'ops-ann' });
    };
    faults.failCall(n, mode);
    let failed = false;
    try {
      await activate();
    } catch (error) {
      if (!(error instanceof InjectedFailure)) throw error;
      failed = true;
    }
    faults.failCall(0, mode);
    if (!failed) break; // every call has had its turn
    crashed++;
    const stored = await services.tables.billing.get('u-c', 's|o|contract');
    if (recovery === 'timer' && stored !== undefined) await services.contractInvoicing.sweep('recovery');
    else await activate();
    const check = (ok: boolean, what: string) => {
      if (!ok) failures.push(`call ${n} (${mode}): ${what}`);
    };
    check(
      (await services.contractInvoicing.sweep('run')).issued === 0,
      'the timer found an invoice to issue',
    );
    const contract = await services.contracts.get('u-c');
    check(JSON.stringify(contract.invoices.map((i) => i.period)) === '[0]', 'one invoice recorded');
    check(stripe.issued.length === 1, 'one invoice issued in Stripe');
    const audit = await services.tables.billing.list('u-c', { prefix: 'audit|' });
    check(
      audit.filter((row) => row.props.kind === 'contract_set').length === 1,
      'one contract_set audit row',
    );
    check(
      audit.filter((row) => row.props.kind === 'contract_invoice_issued').length === 1,
      'one contract_invoice_issued audit row',
    );
    check((await services.tables.billing.get('ops|contracts', 'u-c')) !== undefined, 'listed for the timer');
  }
  return { crashed, failures };
}
