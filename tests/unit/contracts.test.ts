import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { capabilitiesFor } from '../../src/billing/access/decide.js';
import { catalog } from '../../src/billing/catalog.js';
import {
  type ContractInvoice,
  type ContractState,
  type ContractTerms,
  contractPaymentStatus,
  contractTermsSchema,
  periodsStartedBy,
} from '../../src/billing/contracts/model.js';
import {
  CONTRACT_INVOICE_METADATA,
  type InvoiceInfo,
  type PaymentsGateway,
} from '../../src/billing/payments.js';
import type { EventQueue } from '../../src/billing/queue.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from '../support/env.js';
import { givenSubscription, manualClock } from '../support/memory.js';
import { faultyTables, InjectedFailure } from '../support/tables.js';

const NOW = '2026-11-15T12:00:00.000Z';

const terms = (over: Partial<ContractTerms> = {}): ContractTerms =>
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

const invoiced = (over: Partial<ContractTerms> = {}) =>
  terms({
    billing: 'stripe_invoice',
    invoicing: { amount: 250_000, currency: 'usd', interval: 'month', daysUntilDue: 30, graceDays: 7 },
    ...over,
  });

/** Stripe's side of contract invoicing, in memory, idempotent as Stripe is (by key, and by metadata). */
function fakeStripe() {
  const invoices = new Map<string, InvoiceInfo>();
  const issued: string[] = [];
  const unused = (what: string) => async (): Promise<never> => {
    throw new Error(`${what} is not used by contracts`);
  };
  const payments: PaymentsGateway = {
    createCustomer: async ({ ownerId }) => ({ id: `cus_${ownerId}` }),
    pricesByLookupKey: unused('pricesByLookupKey'),
    createCheckoutSession: unused('createCheckoutSession'),
    getCheckoutSession: unused('getCheckoutSession'),
    createPortalSession: unused('createPortalSession'),
    getSubscription: unused('getSubscription'),
    listSubscriptions: unused('listSubscriptions'),
    listEvents: unused('listEvents'),
    listOpenCheckoutSessions: unused('listOpenCheckoutSessions'),
    expireCheckoutSession: unused('expireCheckoutSession'),
    listPaidPaymentSessions: unused('listPaidPaymentSessions'),
    checkoutSessionForPaymentIntent: unused('checkoutSessionForPaymentIntent'),
    getCharge: unused('getCharge'),
    getDispute: unused('getDispute'),
    cancelDuplicateSubscription: unused('cancelDuplicateSubscription'),
    changePriceNow: unused('changePriceNow'),
    changePriceAtPeriodEnd: unused('changePriceAtPeriodEnd'),
    releaseSchedule: unused('releaseSchedule'),
    setCancelAtPeriodEnd: unused('setCancelAtPeriodEnd'),
    setQuantity: unused('setQuantity'),
    setSeats: unused('setSeats'),
    async getInvoice(id) {
      const found = invoices.get(id);
      if (!found) throw new Error(`no invoice ${id}`);
      return found;
    },
    listInvoices: unused('listInvoices'),
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
  };
  return { payments, invoices, issued };
}

const noQueue: EventQueue = {
  name: 'unused',
  send: async () => undefined,
  ping: async () => undefined,
};

function servicesWith(tables: Services['tables'], payments: PaymentsGateway, clock = manualClock(NOW)) {
  const config = loadConfig({ BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true', ...baseTestEnv });
  return createServices(config, { clock, tables, payments, queue: noQueue });
}

const memory = () => ({ directory: createMemoryTable('directory'), billing: createMemoryTable('billing') });
const admin = (requestId: string) => ({ actor: 'ops-ann', reason: 'Order form 114', requestId });

describe('contract model', () => {
  it('periods step from startsAt by the interval, the last cut short by endsAt', () => {
    const periods = periodsStartedBy(
      invoiced({ startsAt: '2026-01-31T00:00:00.000Z', endsAt: '2026-04-15T00:00:00.000Z' }),
      new Date('2030-01-01T00:00:00Z'),
    );
    expect(periods.map((p) => [p.period, p.start.toISOString(), p.end.toISOString()])).toEqual([
      [0, '2026-01-31T00:00:00.000Z', '2026-02-28T00:00:00.000Z'],
      [1, '2026-02-28T00:00:00.000Z', '2026-03-31T00:00:00.000Z'],
      [2, '2026-03-31T00:00:00.000Z', '2026-04-15T00:00:00.000Z'],
    ]);
    expect(periodsStartedBy(invoiced(), new Date('2026-11-15T00:00:00Z'))).toHaveLength(1);
    expect(periodsStartedBy(terms(), new Date('2030-01-01T00:00:00Z'))).toEqual([]);
  });

  it('payment status: the worst invoice, by due date and grace days (access follows levels.ts)', () => {
    const invoice = (over: Partial<ContractInvoice>): ContractInvoice => ({
      period: 0,
      periodStart: '2026-11-01T00:00:00.000Z',
      periodEnd: '2026-12-01T00:00:00.000Z',
      invoiceId: 'in_1',
      status: 'open',
      amountDue: 100,
      amountPaid: 0,
      currency: 'usd',
      dueAt: '2026-12-01T00:00:00.000Z',
      attempts: 0,
      hostedInvoiceUrl: null,
      ...over,
    });
    const contract = (invoices: ContractInvoice[]): ContractState => ({
      id: 'ct_1',
      terms: invoiced(),
      createdAt: NOW,
      updatedAt: NOW,
      updatedBy: 'ops',
      invoices,
    });
    const at = (iso: string, invoices: ContractInvoice[]) =>
      contractPaymentStatus(contract(invoices), new Date(iso));
    expect(at('2026-11-20T00:00:00Z', [invoice({})])).toBe('active');
    expect(at('2026-11-20T00:00:00Z', [invoice({ attempts: 1 })])).toBe('retrying');
    expect(at('2026-12-02T00:00:00Z', [invoice({})])).toBe('grace');
    expect(at('2026-12-08T00:00:00Z', [invoice({})])).toBe('past_due');
    expect(at('2026-12-08T00:00:00Z', [invoice({ status: 'paid' })])).toBe('active');
    expect(
      at('2026-11-20T00:00:00Z', [
        invoice({ status: 'paid' }),
        invoice({ period: 1, status: 'uncollectible' }),
      ]),
    ).toBe('unpaid');
    expect(
      contractPaymentStatus(
        { ...contract([invoice({ status: 'uncollectible' })]), terms: terms() },
        new Date(),
      ),
    ).toBe('active');
  });

  it('refuses terms that cannot be: an end before the start, invoicing without stripe_invoice', () => {
    expect(contractTermsSchema.safeParse({ ...terms(), endsAt: '2026-10-01T00:00:00.000Z' }).success).toBe(
      false,
    );
    expect(contractTermsSchema.safeParse({ ...terms(), billing: 'stripe_invoice' }).success).toBe(false);
    expect(contractTermsSchema.safeParse({ ...invoiced(), billing: 'manual' }).success).toBe(false);
    expect(contractTermsSchema.safeParse({ ...terms(), plan: 'pro' }).success).toBe(false);
    expect(contractTermsSchema.safeParse({ ...terms(), limits: { seats: 3 } }).success).toBe(false);
  });
});

describe('contracts over the owner snapshot', () => {
  it('an active contract is the base whatever the subscription; before and after it, the subscription is', async () => {
    const clock = manualClock(NOW);
    const services = servicesWith(memory(), fakeStripe().payments, clock);
    await givenSubscription(services, 'u-1', { plan: 'pro', status: 'active' });
    await services.contracts.set({ ownerId: 'u-1', terms: terms(), ...admin('r1') });
    const caps = capabilitiesFor(await services.owners.read('u-1'), catalog);
    expect(caps).toMatchObject({ plan: 'enterprise', status: 'active', accessLevel: 'full' });
    expect(caps.limits).toEqual({ ...catalog.enterprise.limits, workflows_per_org: 20, seats: 40 });
    expect(caps.flags).toEqual({ ...catalog.enterprise.flags, white_label: false });
    expect(caps.contract?.billing).toBe('manual');
    clock.set('2027-11-01T00:00:00.000Z');
    expect(capabilitiesFor(await services.owners.read('u-1'), catalog).plan).toBe('pro');
  });

  it('set and end are audited with the shared row shape, and an unchanged PUT writes nothing', async () => {
    const services = servicesWith(memory(), fakeStripe().payments);
    const first = await services.contracts.set({ ownerId: 'u-2', terms: terms(), ...admin('r1') });
    expect(first).toMatchObject({ changed: true, created: true });
    const again = await services.contracts.set({ ownerId: 'u-2', terms: terms(), ...admin('r2') });
    expect(again).toMatchObject({ changed: false, created: false, contract: { id: first.contract.id } });
    expect(await services.contracts.end({ ownerId: 'u-2', ...admin('r3') })).toEqual({ ended: true });
    expect(await services.contracts.end({ ownerId: 'u-2', ...admin('r4') })).toEqual({ ended: false });
    const audit = await services.tables.billing.list('u-2', { prefix: 'audit|' });
    expect(
      audit.map((row) => [row.props.kind, row.props.causeId, row.props.actorKind, row.props.revertible]),
    ).toEqual([
      ['contract_set', 'r1', 'admin', 'contract'],
      ['contract_ended', 'r3', 'admin', 'contract'],
    ]);
    expect(JSON.parse(String(audit[1]?.props.before))).toMatchObject({ id: first.contract.id });
    expect(audit[1]?.props.after).toBe('null');
  });

  it('the revert handler applies `before` (a contract, with its id, or none), audited with revertOf', async () => {
    const services = servicesWith(memory(), fakeStripe().payments);
    const a = await services.contracts.set({ ownerId: 'u-3', terms: terms(), ...admin('r1') });
    await services.contracts.set({ ownerId: 'u-3', terms: terms({ seats: 90 }), ...admin('r2') });
    const [, edit] = await services.tables.billing.list('u-3', { prefix: 'audit|' });
    const before = JSON.parse(String(edit?.props.before)) as unknown;
    const revert = { ownerId: 'u-3', actor: 'ops-bob', reason: 'Wrong seats', revertOf: edit?.rowKey ?? '' };
    await services.contractRevert.revert({ ...revert, before, requestId: 'r3' });
    const reverted = await services.contracts.get('u-3');
    expect(reverted).toMatchObject({ id: a.contract.id, seats: 40 });
    await services.contractRevert.revert({ ...revert, before: null, requestId: 'r4' });
    await expect(services.contracts.get('u-3')).rejects.toMatchObject({ code: 'contract_not_found' });
    const audit = await services.tables.billing.list('u-3', { prefix: 'audit|' });
    expect(audit.slice(2).map((row) => [row.props.kind, row.props.revertOf, row.props.actor])).toEqual([
      ['contract_set', edit?.rowKey, 'ops-bob'],
      ['contract_ended', edit?.rowKey, 'ops-bob'],
    ]);
  });

  it('invoicing: one Stripe invoice per period however often it runs, recorded on the contract', async () => {
    const clock = manualClock(NOW);
    const stripe = fakeStripe();
    const services = servicesWith(memory(), stripe.payments, clock);
    await services.contracts.set({ ownerId: 'u-4', terms: invoiced(), ...admin('r1') });
    expect((await services.contractInvoicing.sweep('run-1')).issued).toBe(1);
    expect((await services.contractInvoicing.sweep('run-2')).issued).toBe(0);
    clock.set('2026-12-01T01:00:00.000Z');
    expect((await services.contractInvoicing.sweep('run-3')).issued).toBe(1);
    expect((await services.contractInvoicing.sweep('run-4')).issued).toBe(0);
    expect(stripe.issued).toHaveLength(2);
    const contract = await services.contracts.get('u-4');
    expect(contract.invoices.map((i) => [i.period, i.status])).toEqual([
      [0, 'open'],
      [1, 'open'],
    ]);
  });
});

describe('contracts: a storage failure at any call of activation and invoicing', () => {
  it.each(['before', 'after'] as const)(
    'failing call n (%s), then the same request again: one contract, one audit row, one invoice per period',
    async (mode) => {
      let crashed = 0;
      for (let n = 1; n < 100; n++) {
        const { tables, faults } = faultyTables(memory());
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
        await activate();
        // The timer finds nothing left to do.
        expect((await services.contractInvoicing.sweep('run')).issued).toBe(0);
        const contract = await services.contracts.get('u-c');
        expect(
          contract.invoices.map((i) => i.period),
          `call ${n}`,
        ).toEqual([0]);
        expect(stripe.issued, `call ${n}`).toHaveLength(1);
        const audit = await services.tables.billing.list('u-c', { prefix: 'audit|' });
        expect(
          audit.filter((row) => row.props.kind === 'contract_set'),
          `call ${n}`,
        ).toHaveLength(1);
        expect(
          audit.filter((row) => row.props.kind === 'contract_invoice_issued'),
          `call ${n}`,
        ).toHaveLength(1);
        expect(await services.tables.billing.get('ops|contracts', 'u-c'), `call ${n}`).toBeDefined();
      }
      // Index, snapshot reads, the contract's commit, the customer, the invoice's record: each failed once.
      expect(crashed).toBeGreaterThanOrEqual(8);
    },
  );
});
