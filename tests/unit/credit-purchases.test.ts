import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { CREDIT_PACKS, type CreditPack } from '../../src/billing/catalog.js';
import type { Clock } from '../../src/billing/clock.js';
import {
  type CreditPurchaseOutcome,
  type CreditPurchases,
  createCreditPurchases,
} from '../../src/billing/credit-purchases.js';
import { clawbackTarget } from '../../src/billing/credit-reversal.js';
import { createCredits } from '../../src/billing/credits.js';
import type { SyncCause } from '../../src/billing/lifecycle.js';
import { createMetering } from '../../src/billing/metering.js';
import { createOwnerLanes } from '../../src/billing/metering-lanes.js';
import { reversalRowKey } from '../../src/billing/metering-rows.js';
import { BALANCE_ROW, VERSION_ROW } from '../../src/billing/owner/keys.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import type {
  ChargeInfo,
  CheckoutSessionInfo,
  DisputeStatus,
  PaymentsGateway,
  PriceInfo,
} from '../../src/billing/payments.js';
import { calendarMonth } from '../../src/billing/periods.js';
import type { Pricing, PricingSnapshot } from '../../src/billing/pricing.js';
import type { EntityTable } from '../../src/billing/store.js';
import { usageRowKey } from '../../src/billing/usage.js';
import { givenOwnerRows, memoryServices } from '../support/memory.js';
import { faultyTables, InjectedFailure } from '../support/tables.js';

/**
 * Credit packs bought through Checkout: grants verified against the session as Stripe has it, and
 * clawback of refunded or disputed purchases, on the in-memory table with small fakes of the Stripe
 * reads (the sandbox runs in tests/e2e/credit-purchases.test.ts).
 */

const OWNER = 'alice';
const CUSTOMER = 'cus_alice';
const pack = CREDIT_PACKS[0] as CreditPack; // 5,000 credits for 1,000 usd cents
const bigPack = CREDIT_PACKS[1] as CreditPack;

function testClock(start = '2026-11-15T12:00:00.000Z'): Clock & { advance(ms?: number): void } {
  let now = new Date(start).getTime();
  return { now: () => new Date(now), advance: (ms = 1000) => (now += ms) };
}

const livePrice = (p: CreditPack, id = `price_${p.id}`, over: Partial<PriceInfo> = {}): PriceInfo => ({
  id,
  lookupKey: p.lookupKey,
  unitAmount: p.unitAmount,
  currency: p.currency,
  interval: null,
  productId: `prod_${p.id}`,
  productMetadata: {},
  ...over,
});

const session = (over: Partial<CheckoutSessionInfo> = {}): CheckoutSessionInfo => ({
  id: 'cs_1',
  url: null,
  mode: 'payment',
  status: 'complete',
  paymentStatus: 'paid',
  customerId: CUSTOMER,
  subscriptionId: null,
  paymentIntentId: 'pi_1',
  amountTotal: pack.unitAmount,
  currency: pack.currency,
  lineItems: [{ priceId: `price_${pack.id}`, quantity: 1 }],
  created: new Date('2026-11-15T11:00:00.000Z'),
  metadata: { pack: pack.id },
  ...over,
});

const charge = (over: Partial<ChargeInfo> = {}): ChargeInfo => ({
  id: 'ch_1',
  customerId: CUSTOMER,
  paymentIntentId: 'pi_1',
  amount: pack.unitAmount,
  amountRefunded: 0,
  currency: pack.currency,
  dispute: null,
  ...over,
});

const disputed = (status: DisputeStatus, amount = pack.unitAmount, over: Partial<ChargeInfo> = {}) =>
  charge({ dispute: { id: 'dp_1', status, amount }, ...over });

let causes = 0;
const event = (type = 'charge.refunded'): SyncCause => ({ kind: 'event', id: `evt_${++causes}`, type });

/** Stripe as the purchases read it: a charge that tests change, the session behind a payment intent. */
function fakeStripe(initial: { prices?: PriceInfo[]; refreshed?: PriceInfo[] } = {}) {
  const state = {
    charges: new Map<string, ChargeInfo>([['ch_1', charge()]]),
    sessions: new Map<string, CheckoutSessionInfo>([['pi_1', session()]]),
    chargeReads: 0,
    refreshes: 0,
  };
  const payments: Pick<PaymentsGateway, 'getCharge' | 'checkoutSessionForPaymentIntent'> = {
    async getCharge(id) {
      state.chargeReads++;
      const found = state.charges.get(id);
      if (!found) throw new Error(`no charge ${id}`);
      return found;
    },
    async checkoutSessionForPaymentIntent(pi) {
      return state.sessions.get(pi) ?? null;
    },
  };
  const snapshotOf = (list: readonly PriceInfo[]): PricingSnapshot => ({
    prices: new Map(list.map((p) => [p.lookupKey ?? '', p])),
    fetchedAt: new Date(),
    stale: false,
  });
  const current = initial.prices ?? [livePrice(pack), livePrice(bigPack)];
  const pricing: Pick<Pricing, 'current' | 'refresh'> = {
    current: async () => snapshotOf(current),
    refresh: async () => {
      state.refreshes++;
      return snapshotOf(initial.refreshed ?? current);
    },
  };
  return { state, payments, pricing };
}

function setup(options: { table?: EntityTable; prices?: PriceInfo[]; refreshed?: PriceInfo[] } = {}) {
  const table = options.table ?? createMemoryTable('billing');
  const clock = testClock();
  const owners = createOwnerStore({ table, clock });
  const stripe = fakeStripe(options);
  const logged: string[] = [];
  const purchases: CreditPurchases = createCreditPurchases({
    table,
    owners,
    payments: stripe.payments,
    customers: { ownerOf: async (id) => (id === CUSTOMER ? OWNER : undefined) },
    pricing: stripe.pricing,
    packs: CREDIT_PACKS,
    clock,
    log: (line) => logged.push(line),
  });
  const lanes = createOwnerLanes();
  const credits = createCredits({ table, owners, clock, lanes });
  const metering = createMetering({ table, owners, clock, lanes });
  const balance = () => credits.balance(OWNER);
  const ledger = async () => (await credits.ledger(OWNER)).map((e) => [e.kind, e.credits, e.balanceAfter]);
  // Audit keys sort newest first; oldest first reads better here.
  const audit = async () => (await table.list(OWNER, { prefix: 'audit|' })).map((r) => r.props).reverse();
  const version = async () => (await table.get(OWNER, VERSION_ROW))?.props.version;
  /** A refund or dispute event: the charge changes in Stripe, then its event is processed. */
  const stripeSays = (next: ChargeInfo) => {
    stripe.state.charges.set(next.id, next);
    clock.advance();
    return purchases.reconcileCharge(next.id, event());
  };
  const grant = (s = session()) => {
    clock.advance();
    return purchases.grantForSession(OWNER, s, event('checkout.session.completed'));
  };
  return {
    table,
    clock,
    purchases,
    credits,
    metering,
    stripe,
    logged,
    balance,
    ledger,
    audit,
    version,
    grant,
    stripeSays,
  };
}

describe('credit grants: verified against the session Stripe has', () => {
  it('grants a paid pack once, with its ledger row, audit row and the version bump in one change', async () => {
    const t = setup();
    expect(await t.grant()).toEqual({ kind: 'granted', ownerId: OWNER, credits: pack.credits });
    expect(await t.balance()).toBe(pack.credits);
    expect(await t.version()).toBe(1);
    expect(await t.ledger()).toEqual([['grant', pack.credits, pack.credits]]);
    expect(await t.audit()).toEqual([
      expect.objectContaining({
        kind: 'credits_granted',
        sessionId: 'cs_1',
        credits: pack.credits,
        actor: 'stripe',
      }),
    ]);
    // Stripe delivers the completion again, and again concurrently: still one grant.
    expect(await t.grant()).toEqual({ kind: 'duplicate', ownerId: OWNER });
    const [a, b] = await Promise.all([t.grant(), t.grant()]);
    expect([a?.kind, b?.kind]).toEqual(['duplicate', 'duplicate']);
    expect(await t.balance()).toBe(pack.credits);
    expect(await t.audit()).toHaveLength(1);
  });

  it('two copies racing the first grant grant once', async () => {
    const t = setup();
    const outcomes = await Promise.all([t.grant(), t.grant(), t.grant()]);
    expect(outcomes.map((o) => o.kind).sort()).toEqual(['duplicate', 'duplicate', 'granted']);
    expect(await t.balance()).toBe(pack.credits);
  });

  it.each([
    ['an unpaid session', { paymentStatus: 'unpaid' }, 'not_paid'],
    ['a session paid with nothing to pay', { paymentStatus: 'no_payment_required' }, 'not_paid'],
    ['an open session', { status: 'open' }, 'not_complete'],
    ['a subscription checkout', { mode: 'subscription' }, 'not_payment_mode'],
    ['a session without line items', { lineItems: [] }, 'not_one_line_item'],
    [
      'two line items',
      {
        lineItems: [
          { priceId: `price_${pack.id}`, quantity: 1 },
          { priceId: `price_${bigPack.id}`, quantity: 1 },
        ],
      },
      'not_one_line_item',
    ],
    [
      'a price no pack sells, without metadata',
      { lineItems: [{ priceId: 'price_other', quantity: 1 }], metadata: {} },
      'not_a_pack',
    ],
    ['less than the price', { amountTotal: pack.unitAmount - 1 }, 'amount_mismatch'],
    ['a discounted pack (amount 0)', { amountTotal: 0 }, 'amount_mismatch'],
    ['another currency', { currency: 'eur' }, 'currency_mismatch'],
    [
      "a small pack's price claiming the big pack in its metadata",
      { metadata: { pack: bigPack.id } },
      // The price names the pack; the metadata is not believed: 5,000 credits were paid for and granted.
      null,
    ],
    [
      "another price with the big pack's name and the small pack's amount",
      { lineItems: [{ priceId: 'price_other', quantity: 1 }], metadata: { pack: bigPack.id } },
      'amount_mismatch',
    ],
  ] as const)('%s: %s', async (_name, over, reason) => {
    const t = setup();
    const outcome = await t.grant(session(over as Partial<CheckoutSessionInfo>));
    if (reason === null) {
      expect(outcome).toEqual({ kind: 'granted', ownerId: OWNER, credits: pack.credits });
      return;
    }
    expect(outcome).toEqual({ kind: 'not_granted', ownerId: OWNER, reason });
    expect(await t.balance()).toBe(0);
    expect(await t.ledger()).toEqual([]);
    expect(await t.audit()).toEqual([
      expect.objectContaining({ kind: 'credits_not_granted', refusal: reason, sessionId: 'cs_1' }),
    ]);
    expect(t.logged).toEqual([expect.stringContaining(`(${reason})`)]);
    // The same event again audits nothing more; a later event (the session paid after all) may still grant.
    const sameCause = event('checkout.session.completed');
    await t.purchases.grantForSession(OWNER, session(over as Partial<CheckoutSessionInfo>), sameCause);
    await t.purchases.grantForSession(OWNER, session(over as Partial<CheckoutSessionInfo>), sameCause);
    expect(await t.audit()).toHaveLength(2);
    expect(await t.grant()).toEqual({ kind: 'granted', ownerId: OWNER, credits: pack.credits });
  });

  it('grants a pack whose price was replaced since the cache was filled, once the fresh prices confirm it', async () => {
    const repriced = livePrice(pack, 'price_new', { unitAmount: 1200 });
    const t = setup({ refreshed: [repriced, livePrice(bigPack)] });
    const paid = session({ lineItems: [{ priceId: 'price_new', quantity: 1 }], amountTotal: 1200 });
    expect(await t.grant(paid)).toMatchObject({ kind: 'granted', credits: pack.credits });
    expect(t.stripe.state.refreshes).toBe(1);
  });

  it("names the pack by its metadata only when the session's price is no longer live, and still checks the money", async () => {
    const t = setup();
    const retired = { lineItems: [{ priceId: 'price_retired', quantity: 1 }] };
    expect(await t.grant(session(retired))).toMatchObject({ kind: 'granted', credits: pack.credits });
    const cheaper = session({ id: 'cs_2', ...retired, amountTotal: pack.unitAmount - 1 });
    expect(await t.grant(cheaper)).toMatchObject({ kind: 'not_granted', reason: 'amount_mismatch' });
  });

  it('grants N packs for a quantity of N paid N times over', async () => {
    const t = setup();
    const three = session({
      lineItems: [{ priceId: `price_${pack.id}`, quantity: 3 }],
      amountTotal: pack.unitAmount * 3,
    });
    expect(await t.grant(three)).toMatchObject({ kind: 'granted', credits: pack.credits * 3 });
    const short = session({ id: 'cs_2', lineItems: [{ priceId: `price_${pack.id}`, quantity: 3 }] });
    expect(await t.grant(short)).toMatchObject({ kind: 'not_granted', reason: 'amount_mismatch' });
  });
});

describe('clawback: refunds and disputes take the credits back', () => {
  it('takes back a partial refund pro rata (rounded down), the rest with the full refund, then nothing more', async () => {
    const t = setup();
    await t.grant();
    expect(await t.stripeSays(charge({ amountRefunded: 333 }))).toEqual({
      kind: 'reversed',
      ownerId: OWNER,
      credits: -1665,
    });
    expect(await t.balance()).toBe(pack.credits - 1665);
    expect(await t.stripeSays(charge({ amountRefunded: pack.unitAmount }))).toMatchObject({ credits: -3335 });
    expect(await t.balance()).toBe(0);
    expect(await t.stripeSays(charge({ amountRefunded: pack.unitAmount }))).toMatchObject({
      kind: 'unchanged',
    });
    expect(await t.ledger()).toEqual([
      ['clawback', -3335, 0],
      ['clawback', -1665, pack.credits - 1665],
      ['grant', pack.credits, pack.credits],
    ]);
    expect((await t.audit()).map((a) => a.kind)).toEqual([
      'credits_granted',
      'credits_clawed_back',
      'credits_clawed_back',
    ]);
    expect(await t.version()).toBe(3);
    expect((await t.table.get(OWNER, reversalRowKey('cs_1')))?.props).toMatchObject({
      clawed: pack.credits,
      rev: 2,
    });
  });

  it('a dispute takes them back while the money is withdrawn, gives them back when won, keeps them when lost', async () => {
    const t = setup();
    await t.grant();
    await t.stripeSays(disputed('warning_needs_response')); // an inquiry: no money moved
    expect(await t.balance()).toBe(pack.credits);
    expect(await t.stripeSays(disputed('needs_response'))).toMatchObject({ credits: -pack.credits });
    expect(await t.balance()).toBe(0);
    expect(await t.stripeSays(disputed('won'))).toMatchObject({ kind: 'reversed', credits: pack.credits });
    expect(await t.balance()).toBe(pack.credits);
    expect((await t.ledger()).map(([kind]) => kind)).toEqual(['reinstate', 'clawback', 'grant']);

    const lost = setup();
    await lost.grant();
    await lost.stripeSays(disputed('needs_response'));
    await lost.stripeSays(disputed('under_review'));
    await lost.stripeSays(disputed('lost'));
    expect(await lost.balance()).toBe(0);
    expect((await lost.ledger()).map(([kind]) => kind)).toEqual(['clawback', 'grant']);
  });

  it.each(['warning_closed', 'prevented', 'warning_under_review'] as const)(
    'a dispute %s takes nothing back',
    async (status) => {
      const t = setup();
      await t.grant();
      expect(await t.stripeSays(disputed(status))).toMatchObject({ kind: 'unchanged' });
      expect(await t.balance()).toBe(pack.credits);
    },
  );

  it('a refund and a dispute of the rest take everything; a refund and a won dispute only the refund', () => {
    expect(clawbackTarget(5000, disputed('lost', 700, { amountRefunded: 300 }))).toBe(5000);
    expect(clawbackTarget(5000, disputed('won', 700, { amountRefunded: 300 }))).toBe(1500);
    expect(clawbackTarget(5000, disputed('lost', 1000, { amountRefunded: 300 }))).toBe(5000);
    expect(clawbackTarget(3, charge({ amountRefunded: 999 }))).toBe(2);
    expect(
      clawbackTarget(100_000_000, charge({ amount: 99_999_999_99, amountRefunded: 99_999_999_98 })),
    ).toBe(99_999_999);
  });

  it('any order and any number of refund and dispute events converge to the same balance', async () => {
    const states = [
      charge({ amountRefunded: 300 }),
      disputed('needs_response', 700, { amountRefunded: 300 }),
      disputed('won', 700, { amountRefunded: 300 }),
    ];
    const final = states[2] as ChargeInfo;
    const orders = [
      [0, 1, 2],
      [2, 1, 0],
      [1, 0, 2, 2],
      [0, 0, 1, 1, 2],
      [2, 0, 1],
    ];
    for (const order of orders) {
      const t = setup();
      await t.grant();
      // Each event re-reads the charge as Stripe has it when it is processed; the last one sees the end state.
      for (const [i, step] of order.entries()) {
        const last = i === order.length - 1;
        await t.stripeSays(last ? final : (states[step] as ChargeInfo));
      }
      await t.stripeSays(final);
      expect(await t.balance(), `order ${order.join(',')}`).toBe(pack.credits - 1500);
      const entries = await t.credits.ledger(OWNER);
      expect(entries.reduce((sum, e) => sum + e.credits, 0)).toBe(pack.credits - 1500);
    }
  });

  it('a refund processed before its grant: the grant takes it back in the same change', async () => {
    const t = setup();
    t.stripe.state.charges.set('ch_1', charge({ amountRefunded: pack.unitAmount }));
    expect(await t.purchases.reconcileCharge('ch_1', event())).toMatchObject({
      kind: 'unchanged',
      ownerId: OWNER,
    });
    expect(await t.balance()).toBe(0);
    expect(await t.ledger()).toEqual([]);
    expect(await t.grant()).toMatchObject({ kind: 'granted', credits: pack.credits });
    expect(await t.balance()).toBe(0);
    expect(await t.ledger()).toEqual([
      ['clawback', -pack.credits, 0],
      ['grant', pack.credits, pack.credits],
    ]);
    // The refund's event again, and a won dispute's afterwards: nothing more, then the usual reinstatement.
    expect(await t.stripeSays(charge({ amountRefunded: pack.unitAmount }))).toMatchObject({
      kind: 'unchanged',
    });
    expect(await t.balance()).toBe(0);
  });

  it('a refund racing its grant ends with the refund applied, whoever commits first', async () => {
    for (let round = 0; round < 20; round++) {
      const t = setup();
      t.stripe.state.charges.set('ch_1', charge({ amountRefunded: 500 }));
      const racers = [t.grant(), t.purchases.reconcileCharge('ch_1', event())];
      if (round % 2) racers.reverse();
      await Promise.all(racers);
      await t.purchases.reconcileCharge('ch_1', event());
      expect(await t.balance()).toBe(pack.credits / 2);
    }
  });

  it('leaves alone what is not a pack purchase or not our customer', async () => {
    const t = setup();
    t.stripe.state.charges.set('ch_x', charge({ id: 'ch_x', paymentIntentId: 'pi_x', amountRefunded: 10 }));
    expect(await t.purchases.reconcileCharge('ch_x', event())).toMatchObject({
      kind: 'unchanged',
      ownerId: null,
    });
    t.stripe.state.sessions.set('pi_sub', session({ mode: 'subscription' }));
    t.stripe.state.charges.set('ch_s', charge({ id: 'ch_s', paymentIntentId: 'pi_sub', amountRefunded: 10 }));
    expect(await t.purchases.reconcileCharge('ch_s', event())).toMatchObject({
      kind: 'unchanged',
      ownerId: null,
    });
    t.stripe.state.charges.set('ch_o', charge({ id: 'ch_o', customerId: 'cus_other', amountRefunded: 10 }));
    t.stripe.state.sessions.set('pi_1', session({ customerId: 'cus_other' }));
    expect(await t.purchases.reconcileCharge('ch_o', event())).toMatchObject({
      kind: 'unchanged',
      ownerId: null,
    });
    t.stripe.state.sessions.set('pi_1', session({ amountTotal: 1 }));
    expect(await t.purchases.reconcileCharge('ch_1', event())).toMatchObject({
      kind: 'unchanged',
      reason: expect.stringContaining('amount_mismatch'),
    });
    expect(await t.table.get(OWNER, reversalRowKey('cs_1'))).toBeUndefined();
  });
});

describe('a balance below zero', () => {
  const november = calendarMonth(new Date('2026-11-15T00:00:00Z'));
  const terms = { allowance: 10, period: november, mode: 'enforce' } as const;

  it('a clawback of spent credits goes below zero; consumption beyond the allowance is then denied as with none', async () => {
    const t = setup();
    await t.grant();
    const spend = await t.metering.consume({
      ownerId: OWNER,
      meter: 'executions',
      quantity: 10 + 100,
      idempotencyKey: 'run-1',
      terms,
    });
    expect(spend).toMatchObject({ kind: 'consumed', fromCredits: 100 });
    await t.stripeSays(charge({ amountRefunded: pack.unitAmount }));
    expect(await t.balance()).toBe(-100);
    expect(await t.ledger()).toEqual([
      ['clawback', -pack.credits, -100],
      ['draw', -100, pack.credits - 100],
      ['grant', pack.credits, pack.credits],
    ]);

    // The same consumption by an owner with no credits at all answers the same, bar the balance shown.
    const fresh = setup();
    const ask = (m: typeof t.metering, key: string, ownerId = OWNER) =>
      m.consume({ ownerId, meter: 'executions', quantity: 1, idempotencyKey: key, terms });
    const zeroOwner = await fresh.metering.consume({
      ownerId: OWNER,
      meter: 'executions',
      quantity: 10,
      idempotencyKey: 'run-1',
      terms,
    });
    expect(zeroOwner.kind).toBe('consumed');
    const negative = await ask(t.metering, 'run-2');
    const zero = await ask(fresh.metering, 'run-2');
    expect(negative).toMatchObject({ kind: 'denied', reason: 'limit_exceeded', creditBalance: -100 });
    // Only the balance shown, what was used before, and the two owners' versions and read times differ.
    const same = ({ creditBalance: _b, at: _a, used: _u, version: _v, asOf: _o, ...rest }: typeof zero) =>
      rest;
    expect(same(negative)).toEqual(same(zero));
    expect(await t.balance()).toBe(-100);
    const status = await t.metering.status({ ownerId: OWNER, meter: 'executions', terms });
    expect(status).toMatchObject({ creditBalance: -100, remaining: 0, allowanceRemaining: 0 });

    // A new grant pays the debt first.
    await t.grant(session({ id: 'cs_2', paymentIntentId: 'pi_2' }));
    expect(await t.balance()).toBe(pack.credits - 100);
    expect((await t.table.get(OWNER, BALANCE_ROW))?.props.balance).toBe(pack.credits - 100);
  });
});

describe('a balance below zero, as checks and the summary see it', () => {
  it('a check beyond the allowance is denied as with no credits; the summary shows the balance as it is', async () => {
    const services = memoryServices();
    const caps = await services.entitlements.capabilities(OWNER);
    const allowance = caps.limits.executions ?? 0;
    await givenOwnerRows(services, OWNER, {
      [usageRowKey('executions', caps.period)]: { used: allowance - 2 },
      [BALANCE_ROW]: { balance: -100, updatedAt: '2026-11-15T00:00:00.000Z' },
    });
    const check = (quantity: number) =>
      services.entitlements.check({ subject: { userId: OWNER }, feature: 'executions', quantity });
    expect(await check(2)).toMatchObject({ allowed: true, remaining: 2 });
    expect(await check(3)).toMatchObject({ allowed: false, reason: 'limit_exceeded', remaining: 2 });
    const summary = await services.summaries.forWorkspace(OWNER, { kind: 'personal', userId: OWNER }, OWNER);
    expect(summary.credits).toEqual({ balance: -100 });
    expect(summary.usage.executions).toMatchObject({ remaining: 2 });
    expect(await services.credits.balance(OWNER)).toBe(-100);
  });
});

describe('clawback: a failure at any storage call', () => {
  /** Runs `step` with its n-th storage call failing (before or after it took effect), then once more cleanly. */
  async function crashEveryCall(
    prepare: (t: ReturnType<typeof setup>) => Promise<void>,
    step: (t: ReturnType<typeof setup>) => Promise<CreditPurchaseOutcome>,
    check: (t: ReturnType<typeof setup>) => Promise<void>,
  ) {
    let calls = 0;
    for (const mode of ['before', 'after'] as const) {
      for (let n = 1; ; n++) {
        const { tables, faults } = faultyTables({ billing: createMemoryTable('billing') });
        const t = setup({ table: tables.billing });
        await prepare(t);
        faults.failCall(n, mode);
        let failed = false;
        try {
          await step(t);
        } catch (error) {
          if (!(error instanceof InjectedFailure)) throw error;
          failed = true;
        }
        faults.failCall(0, mode);
        await step(t); // the redelivery
        await check(t);
        if (!failed) break;
        calls = Math.max(calls, n);
      }
    }
    return calls;
  }

  const consistent = async (t: ReturnType<typeof setup>, expected: number) => {
    expect(await t.balance()).toBe(expected);
    const entries = await t.credits.ledger(OWNER);
    expect(entries.reduce((sum, e) => sum + e.credits, 0)).toBe(expected);
    expect(entries[0]?.balanceAfter).toBe(expected);
    const reversal = await t.table.get(OWNER, reversalRowKey('cs_1'));
    expect(reversal?.props.clawed).toBe(pack.credits - expected);
  };

  it('a clawback, failing at each call in turn and redelivered, takes back exactly once', async () => {
    const calls = await crashEveryCall(
      async (t) => {
        await t.grant();
        t.stripe.state.charges.set('ch_1', charge({ amountRefunded: 600 }));
      },
      (t) => t.purchases.reconcileCharge('ch_1', event()),
      (t) => consistent(t, pack.credits - 3000),
    );
    expect(calls).toBeGreaterThan(2);
  });

  it('a grant after an early refund, failing at each call in turn and redelivered, grants and takes back once', async () => {
    const calls = await crashEveryCall(
      async (t) => {
        t.stripe.state.charges.set('ch_1', charge({ amountRefunded: 600 }));
        await t.purchases.reconcileCharge('ch_1', event());
      },
      (t) => t.purchases.grantForSession(OWNER, session(), event('checkout.session.completed')),
      (t) => consistent(t, pack.credits - 3000),
    );
    expect(calls).toBeGreaterThan(2);
  });
});
