import { describe, expect, it } from 'vitest';
import { capabilitiesFor } from '../../src/billing/access/decide.js';
import { catalog } from '../../src/billing/catalog.js';
import {
  type ContractInvoice,
  type ContractState,
  contractPaymentInstants,
  contractPaymentStatus,
  contractTermsSchema,
  periodsStartedBy,
} from '../../src/billing/contracts/model.js';
import {
  admin,
  crashActivation,
  fakeStripe,
  invoiced,
  memory,
  NOW,
  servicesWith,
  terms,
} from '../support/contracts.js';
import { givenSubscription, manualClock, memoryServices } from '../support/memory.js';

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

    // The instants the status moves by the clock alone are exactly where it changes above: due, then grace over.
    const moves = contractPaymentInstants(contract([invoice({}), invoice({ period: 1, status: 'paid' })]));
    expect(moves.map((t) => new Date(t).toISOString())).toEqual([
      '2026-12-01T00:00:00.000Z',
      '2026-12-08T00:00:00.000Z',
    ]);
    const [due = 0, graceOver = 0] = moves;
    const just = (t: number) => contractPaymentStatus(contract([invoice({})]), new Date(t));
    expect([just(due - 1), just(due), just(graceOver - 1), just(graceOver)]).toEqual([
      'active',
      'grace',
      'grace',
      'past_due',
    ]);
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
    // Its periods are numbered from startsAt at the interval: those cannot move any more; the amount can.
    await expect(
      services.contracts.set({
        ownerId: 'u-4',
        terms: invoiced({ startsAt: '2026-11-02T00:00:00.000Z' }),
        ...admin('r2'),
      }),
    ).rejects.toMatchObject({ code: 'contract_invoiced' });
    const raised = invoiced();
    if (raised.invoicing) raised.invoicing.amount = 300_000;
    expect((await services.contracts.set({ ownerId: 'u-4', terms: raised, ...admin('r3') })).changed).toBe(
      true,
    );
    const contract = await services.contracts.get('u-4');
    expect(contract.invoices.map((i) => [i.period, i.status])).toEqual([
      [0, 'open'],
      [1, 'open'],
    ]);
  });
});

describe('contracts and kept snapshots', () => {
  it('metering reads afresh when a contract ends between two consumptions: the lock set follows', async () => {
    const clock = manualClock(NOW);
    const services = memoryServices({}, clock);
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.contracts.set({ ownerId: 'alice', terms: terms(), ...admin('r1') });
    const perOrg = catalog.free.limits.workflows_per_org ?? 0;
    for (let i = 0; i <= perOrg; i++)
      await services.directory.putWorkflow(`wf-${i}`, {
        workspace: { kind: 'org', orgId: 'acme' },
        nodeCount: 1,
      });
    const consume = (key: string) =>
      services.usage.consume({
        subject: { workflowId: `wf-${perOrg}` },
        meter: 'executions',
        quantity: 1,
        idempotencyKey: key,
      });
    // This process now keeps alice's snapshot.
    expect((await consume('k1')).kind).toBe('consumed');
    clock.set('2027-11-01T00:00:01.000Z');
    // The newest workflow is over the free plan's per-organization limit now: locked, not an error.
    await expect(consume('k2')).rejects.toMatchObject({ code: 'resource_locked' });
  });
});

describe('contracts: a storage failure at any call of activation and invoicing', () => {
  it.each([
    ['before', 'request'],
    ['after', 'request'],
    ['before', 'timer'],
    ['after', 'timer'],
  ] as const)(
    'failing call n (%s), finished by the %s: one contract, one audit row, one invoice per period',
    async (mode, recovery) => {
      const run = await crashActivation(memory, mode, recovery);
      expect(run.failures).toEqual([]);
      // Index, snapshot reads, the contract's commit, the customer, the invoice's record: each failed once.
      expect(run.crashed).toBeGreaterThanOrEqual(8);
    },
  );
});
