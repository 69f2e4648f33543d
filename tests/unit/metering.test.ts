import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import type { ConsumeTerms } from '../../src/billing/access/decide.js';
import {
  CREDIT_PACKS,
  catalog,
  METERS,
  meterAllowance,
  parseCreditPacks,
} from '../../src/billing/catalog.js';
import type { Clock } from '../../src/billing/clock.js';
import { createCredits } from '../../src/billing/credits.js';
import { BillingError } from '../../src/billing/errors.js';
import {
  type ConsumeOutcome,
  type ConsumeRequest,
  createMetering,
  MeteringContentionError,
  type MeteringOptions,
} from '../../src/billing/metering.js';
import { createOwnerLanes } from '../../src/billing/metering-lanes.js';
import { VERSION_ROW } from '../../src/billing/owner/keys.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import { calendarMonth, currentPeriod, type UsagePeriod } from '../../src/billing/periods.js';
import {
  type EntityTable,
  StoreError,
  type TransactionAction,
  TransactionFailedError,
} from '../../src/billing/store.js';
import { parseUsageCounter, usageRowKey } from '../../src/billing/usage.js';

/** A clock tests move by hand. (Local, so these tests do not load the composition root.) */
function testClock(start = '2026-11-15T12:00:00.000Z'): Clock & { set(iso: string): void } {
  let now = new Date(start);
  return { now: () => new Date(now), set: (iso) => (now = new Date(iso)) };
}

const november: UsagePeriod = calendarMonth(new Date('2026-11-15T00:00:00Z'));
const december: UsagePeriod = calendarMonth(new Date('2026-12-15T00:00:00Z'));

/** Counts what reaches storage, to prove group commit and to see failed transactions. */
function countingTable(inner: EntityTable) {
  const stats = { transactions: 0, failed: 0, largest: 0 };
  const table: EntityTable = {
    ...inner,
    async transact(partitionKey: string, actions: readonly TransactionAction[]) {
      stats.transactions++;
      stats.largest = Math.max(stats.largest, actions.length);
      try {
        return await inner.transact(partitionKey, actions);
      } catch (error) {
        stats.failed++;
        throw error;
      }
    },
  };
  return { table, stats };
}

/** Metering and credits over one table, sharing lanes as the composition root should. */
function setup(table: EntityTable = createMemoryTable('billing'), options?: MeteringOptions) {
  const clock = testClock();
  const lanes = createOwnerLanes();
  const owners = createOwnerStore({ table, clock });
  return {
    table,
    clock,
    metering: createMetering({ table, owners, clock, lanes, ...(options ? { options } : {}) }),
    credits: createCredits({ table, owners, clock, lanes }),
  };
}

/** A request with its terms fixed beside it, flat, as these tests write them. */
type FlatRequest = Omit<ConsumeRequest, 'terms'> & Pick<ConsumeTerms, 'allowance' | 'period' | 'mode'>;

const request = (overrides: Partial<FlatRequest> & Pick<FlatRequest, 'idempotencyKey'>): ConsumeRequest => {
  const { allowance, period, mode, ...rest }: FlatRequest = {
    ownerId: 'alice',
    meter: 'executions',
    quantity: 1,
    allowance: 10,
    period: november,
    mode: 'enforce',
    ...overrides,
  };
  return { ...rest, terms: { allowance, period, mode } };
};

function consumed(outcome: ConsumeOutcome) {
  if (outcome.kind !== 'consumed') throw new Error(`expected consumed, got ${JSON.stringify(outcome)}`);
  return outcome;
}

const counterOf = async (table: EntityTable, period = november, ownerId = 'alice') =>
  (await table.get(ownerId, usageRowKey('executions', period)))?.props;

describe('catalog: meters and credit packs', () => {
  it("declares executions with the plan's executions limit as its allowance", () => {
    expect(METERS.executions).toMatchObject({ allowanceLimit: 'executions', window: 'billing_period' });
    expect(meterAllowance(catalog.free.limits, 'executions')).toBe(catalog.free.limits.executions);
    expect(meterAllowance(catalog.enterprise.limits, 'executions')).toBeNull();
  });

  it('declares one-time credit packs with their own lookup keys, validated at load', () => {
    expect(CREDIT_PACKS[0]).toMatchObject({
      id: 'credits_5k',
      credits: 5000,
      lookupKey: 'credits_5k',
      currency: 'usd',
    });
    expect(CREDIT_PACKS.length).toBeGreaterThan(1);
    const first = CREDIT_PACKS[0];
    expect(() => parseCreditPacks([first, first])).toThrow(/duplicate id credits_5k/);
    expect(() => parseCreditPacks([{ ...first, lookupKey: 'pro_monthly' }])).toThrow(
      /duplicate lookup key pro_monthly/,
    );
    expect(() => parseCreditPacks([{ ...first, credits: 0 }])).toThrow(/\[0\]\.credits/);
  });
});

describe('metering: consume', () => {
  it('draws on the period allowance first, then on the credit balance', async () => {
    const { metering, credits, table } = setup();
    await credits.grantCredits({
      ownerId: 'alice',
      credits: 10,
      sourceId: 'cs_1',
      description: '10 credits',
    });

    const first = consumed(
      await metering.consume(request({ idempotencyKey: 'run-1', quantity: 3, allowance: 5 })),
    );
    expect(first).toMatchObject({
      replayed: false,
      used: 3,
      allowance: 5,
      allowanceRemaining: 2,
      remaining: 12,
      fromAllowance: 3,
      fromCredits: 0,
      creditBalance: 10,
      periodKey: '2026-11',
      periodEnd: '2026-12-01T00:00:00.000Z',
    });
    const second = consumed(
      await metering.consume(request({ idempotencyKey: 'run-2', quantity: 4, allowance: 5 })),
    );
    expect(second).toMatchObject({
      used: 7,
      allowanceRemaining: 0,
      fromAllowance: 2,
      fromCredits: 2,
      creditBalance: 8,
      remaining: 8,
    });

    expect(await credits.balance('alice')).toBe(8);
    expect(await counterOf(table)).toMatchObject({
      used: 7,
      allowanceUsed: 5,
      creditsUsed: 2,
      overage: 0,
      allowance: 5,
      periodStart: '2026-11-01T00:00:00.000Z',
      periodEnd: '2026-12-01T00:00:00.000Z',
    });
    const [draw] = await credits.ledger('alice');
    expect(draw).toMatchObject({
      kind: 'draw',
      credits: -2,
      balanceAfter: 8,
      ref: 'run-2',
      periodKey: '2026-11',
    });
  });

  it('denies under enforce what allowance and credits cannot cover, changing nothing', async () => {
    const { metering, credits, table } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 1, sourceId: 'cs_1', description: '1 credit' });
    consumed(await metering.consume(request({ idempotencyKey: 'run-1', quantity: 2, allowance: 3 })));
    const before = await table.list('alice');

    const denied = await metering.consume(request({ idempotencyKey: 'run-2', quantity: 5, allowance: 3 }));
    expect(denied).toMatchObject({
      kind: 'denied',
      reason: 'limit_exceeded',
      remaining: 2,
      shortfall: 3,
      used: 2,
      fromAllowance: 0,
      fromCredits: 0,
      creditBalance: 1,
    });
    const after = await table.list('alice');
    // Only the marker that remembers the answer was added; counter, balance and ledger are untouched.
    // (The snapshot's version moves on: the denial was decided from the snapshot.)
    expect(after.map((r) => r.rowKey).filter((k) => !before.some((b) => b.rowKey === k))).toEqual([
      'consume|run-2',
    ]);
    for (const row of before.filter((r) => r.rowKey !== VERSION_ROW))
      expect(after.find((r) => r.rowKey === row.rowKey)?.etag).toBe(row.etag);
  });

  it('decides from the snapshot it kept only while nobody changed it since', async () => {
    const { metering, table, clock } = setup();
    // Another process: its own owner store and credits, no shared memory.
    const elsewhere = createCredits({ table, owners: createOwnerStore({ table, clock }), clock });
    consumed(await metering.consume(request({ idempotencyKey: 'k1', allowance: 1 })));
    expect((await metering.consume(request({ idempotencyKey: 'k2', allowance: 1 }))).kind).toBe('denied');
    await elsewhere.grantCredits({
      ownerId: 'alice',
      credits: 5,
      sourceId: 'cs_elsewhere',
      description: '5',
    });
    expect(await metering.consume(request({ idempotencyKey: 'k3', allowance: 1 }))).toMatchObject({
      kind: 'consumed',
      fromCredits: 1,
      creditBalance: 4,
    });
  });

  it('remembers a denial: the key keeps its answer even after credits arrive; a new key is a new attempt', async () => {
    const { metering, credits } = setup();
    expect(
      (await metering.consume(request({ idempotencyKey: 'run-1', quantity: 2, allowance: 0 }))).kind,
    ).toBe('denied');
    await credits.grantCredits({ ownerId: 'alice', credits: 5, sourceId: 'cs_1', description: '5 credits' });
    const replay = await metering.consume(request({ idempotencyKey: 'run-1', quantity: 2, allowance: 0 }));
    expect(replay).toMatchObject({ kind: 'denied', replayed: true, creditBalance: 0 });
    const retry = await metering.consume(request({ idempotencyKey: 'run-1:2', quantity: 2, allowance: 0 }));
    expect(retry).toMatchObject({ kind: 'consumed', fromCredits: 2, creditBalance: 3 });
  });

  it('consumes under monitor and records the would-be denial, after drawing what credits there are', async () => {
    const { metering, credits, table } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 1, sourceId: 'cs_1', description: '1 credit' });
    const outcome = consumed(
      await metering.consume(
        request({ idempotencyKey: 'run-1', quantity: 4, allowance: 2, mode: 'monitor' }),
      ),
    );
    expect(outcome).toMatchObject({
      wouldDeny: true,
      shortfall: 1,
      used: 4,
      fromAllowance: 2,
      fromCredits: 1,
      overage: 1,
      creditBalance: 0,
      remaining: 0,
    });
    const records = await table.list('alice', { prefix: 'monitor|' });
    expect(records).toHaveLength(1);
    expect(records[0]?.props).toMatchObject({
      feature: 'executions',
      reason: 'limit_exceeded',
      why: 'monitor',
      limit: 2,
      used: 0,
      quantity: 4,
      idempotencyKey: 'run-1',
    });
    expect(await counterOf(table)).toMatchObject({ used: 4, allowanceUsed: 2, creditsUsed: 1, overage: 1 });
  });

  it('counts under off without checking and without spending credits', async () => {
    const { metering, credits, table } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 5, sourceId: 'cs_1', description: '5 credits' });
    const outcome = consumed(
      await metering.consume(request({ idempotencyKey: 'run-1', quantity: 4, allowance: 1, mode: 'off' })),
    );
    expect(outcome).toMatchObject({
      wouldDeny: false,
      used: 4,
      fromAllowance: 1,
      fromCredits: 0,
      overage: 3,
    });
    expect(await credits.balance('alice')).toBe(5);
    expect(await table.list('alice', { prefix: 'monitor|' })).toHaveLength(0);
  });

  it('treats a null allowance as unlimited and never draws credits for it', async () => {
    const { metering, credits } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 5, sourceId: 'cs_1', description: '5 credits' });
    const outcome = consumed(
      await metering.consume(request({ idempotencyKey: 'run-1', quantity: 1000, allowance: null })),
    );
    expect(outcome).toMatchObject({
      allowance: null,
      remaining: null,
      allowanceRemaining: null,
      fromAllowance: 1000,
      creditBalance: 5,
    });
  });

  it('answers a replay with the original answer and counts nothing, sequentially and concurrently', async () => {
    const { metering, table } = setup();
    const first = await metering.consume(request({ idempotencyKey: 'run-1', quantity: 2 }));
    const again = await metering.consume(request({ idempotencyKey: 'run-1', quantity: 2 }));
    expect(again).toEqual({ ...first, replayed: true });

    const burst = await Promise.all(
      Array.from({ length: 20 }, () => metering.consume(request({ idempotencyKey: 'run-2', quantity: 3 }))),
    );
    expect(burst.filter((o) => !o.replayed)).toHaveLength(1);
    expect(new Set(burst.map((o) => JSON.stringify({ ...o, replayed: false })))).toHaveProperty('size', 1);
    expect((await counterOf(table))?.used).toBe(5);
  });

  it('answers a replay from storage in another process (no shared memory) with the stored answer', async () => {
    const table = createMemoryTable('billing');
    const one = setup(table);
    const other = setup(table);
    const first = await one.metering.consume(request({ idempotencyKey: 'run-1', quantity: 2 }));
    const replays = await Promise.all([
      other.metering.consume(request({ idempotencyKey: 'run-1', quantity: 2 })),
      other.metering.consume(request({ idempotencyKey: 'run-1', quantity: 2 })),
    ]);
    for (const replay of replays) expect(replay).toEqual({ ...first, replayed: true });
    expect((await counterOf(table))?.used).toBe(2);
  });

  it('refuses a reused key for a different consumption', async () => {
    const { metering } = setup();
    await metering.consume(request({ idempotencyKey: 'run-1', quantity: 2 }));
    await expect(metering.consume(request({ idempotencyKey: 'run-1', quantity: 3 }))).rejects.toMatchObject({
      kind: 'conflict',
      code: 'idempotency_key_reused',
    });
    const fresh = setup(setup().table);
    await fresh.metering.consume(request({ idempotencyKey: 'k', quantity: 1 }));
    const [a, b] = await Promise.allSettled([
      fresh.metering.consume(request({ idempotencyKey: 'same', quantity: 1 })),
      fresh.metering.consume(request({ idempotencyKey: 'same', quantity: 2 })),
    ]);
    expect(a.status).toBe('fulfilled');
    expect(b).toMatchObject({ status: 'rejected', reason: { code: 'idempotency_key_reused' } });
  });

  it('starts every period at zero: the counter is keyed by period', async () => {
    const { metering, table } = setup();
    consumed(await metering.consume(request({ idempotencyKey: 'nov', quantity: 10, allowance: 10 })));
    expect((await metering.consume(request({ idempotencyKey: 'nov-2', allowance: 10 }))).kind).toBe('denied');
    const dec = consumed(
      await metering.consume(request({ idempotencyKey: 'dec', allowance: 10, period: december })),
    );
    expect(dec).toMatchObject({ used: 1, allowanceRemaining: 9, periodKey: '2026-12' });
    const usedIn = async (period: UsagePeriod) => {
      const row = await table.get('alice', usageRowKey('executions', period));
      return row ? parseUsageCounter(row).used : 0;
    };
    expect(await usedIn(november)).toBe(10);
    expect(await usedIn(december)).toBe(1);
  });

  it("uses the subscription's billing period as the window for a paid plan", async () => {
    const { metering, table } = setup();
    const period = currentPeriod(new Date('2026-11-20T00:00:00Z'), {
      plan: 'pro',
      interval: 'monthly',
      status: 'active',
      seats: 1,
      currentPeriodStart: '2026-11-10T08:00:00.000Z',
      currentPeriodEnd: '2026-12-10T08:00:00.000Z',
      cancelAtPeriodEnd: false,
      updatedAt: '2026-11-10T08:00:00.000Z',
    });
    const outcome = consumed(await metering.consume(request({ idempotencyKey: 'run-1', period })));
    expect(outcome).toMatchObject({ periodKey: '20261110T080000', periodEnd: '2026-12-10T08:00:00.000Z' });
    expect(await table.get('rollover|2026-12-10', 'alice|executions|20261110T080000')).toBeDefined();
  });

  it("rewrites a counter's bounds to the window decided now, indexing its new end day", async () => {
    // A yearly plan's counter written before its allowance became monthly: same key as the first month.
    const { metering, table } = setup();
    const start = new Date('2026-11-10T08:00:00Z');
    const year: UsagePeriod = { key: '20261110T080000', start, end: new Date('2027-11-10T08:00:00Z') };
    const month: UsagePeriod = { ...year, end: new Date('2026-12-10T08:00:00Z') };
    consumed(await metering.consume(request({ idempotencyKey: 'run-1', period: year })));
    expect(await table.get('rollover|2027-11-10', 'alice|executions|20261110T080000')).toBeDefined();
    const outcome = consumed(await metering.consume(request({ idempotencyKey: 'run-2', period: month })));
    expect(outcome).toMatchObject({ used: 2, periodEnd: '2026-12-10T08:00:00.000Z' });
    expect((await counterOf(table, month))?.periodEnd).toBe('2026-12-10T08:00:00.000Z');
    expect(await table.get('rollover|2026-12-10', 'alice|executions|20261110T080000')).toBeDefined();
  });

  it('writes the rollover index row before the counter, so a crash in between leaves it findable', async () => {
    const inner = createMemoryTable('billing');
    let crash = true;
    const table: EntityTable = {
      ...inner,
      async transact(pk, actions) {
        if (crash) {
          crash = false;
          throw new StoreError('simulated outage', inner.name);
        }
        return inner.transact(pk, actions);
      },
    };
    const { metering } = setup(table);
    await expect(metering.consume(request({ idempotencyKey: 'run-1' }))).rejects.toBeInstanceOf(StoreError);
    expect(await inner.get('rollover|2026-12-01', 'alice|executions|2026-11')).toBeDefined();
    expect(await counterOf(inner)).toBeUndefined();
    consumed(await metering.consume(request({ idempotencyKey: 'run-1' })));
    expect((await counterOf(inner))?.used).toBe(1);
  });

  it('validates requests and says what is wrong', async () => {
    const { metering } = setup();
    const bad = [
      request({ idempotencyKey: 'ok', quantity: 0 }),
      request({ idempotencyKey: 'has/slash' }),
      request({ idempotencyKey: 'ok', allowance: -1 }),
      request({ idempotencyKey: 'ok', period: { key: 'nope', start: new Date(1), end: new Date(2) } }),
      request({ idempotencyKey: 'ok', period: { ...november, end: november.start } }),
      request({ idempotencyKey: 'ok', ownerId: 'a|b' }),
    ];
    for (const input of bad) {
      const error = await metering.consume(input).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(BillingError);
      expect(error).toMatchObject({ kind: 'validation', code: 'invalid_consume_request' });
    }
  });

  it('refuses a period that can no longer be current, and bad terms for a status, consuming nothing', async () => {
    const { metering, table } = setup();
    const longAgo = calendarMonth(new Date('2025-09-15T00:00:00Z'));
    for (const key of ['old-1', 'old-2']) {
      await expect(metering.consume(request({ idempotencyKey: key, period: longAgo }))).rejects.toMatchObject(
        {
          kind: 'validation',
          code: 'period_out_of_range',
        },
      );
    }
    expect(await table.get('alice', usageRowKey('executions', longAgo))).toBeUndefined();
    await expect(
      metering.status({
        ownerId: 'alice',
        meter: 'executions',
        terms: {
          allowance: -5,
          period: { key: 'nope', start: new Date(2), end: new Date(1) },
          mode: 'enforce',
        },
      }),
    ).rejects.toMatchObject({ kind: 'validation', code: 'invalid_status_request' });
  });

  it('reports status without consuming: allowance left plus credits', async () => {
    const { metering, credits } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 7, sourceId: 'cs_1', description: '7 credits' });
    await metering.consume(request({ idempotencyKey: 'run-1', quantity: 4, allowance: 10 }));
    const status = await metering.status({
      ownerId: 'alice',
      meter: 'executions',
      terms: { allowance: 10, period: november, mode: 'enforce' },
    });
    expect(status).toMatchObject({
      used: 4,
      allowanceUsed: 4,
      allowanceRemaining: 6,
      creditBalance: 7,
      remaining: 13,
    });
    const empty = await metering.status({
      ownerId: 'bob',
      meter: 'executions',
      terms: { allowance: null, period: november, mode: 'enforce' },
    });
    expect(empty).toMatchObject({ used: 0, remaining: null, periodEnd: '2026-12-01T00:00:00.000Z' });
  });
});

describe('metering: hot owners', () => {
  it('allows exactly the remaining allowance out of 200 concurrent consumes, in a few group commits', async () => {
    const { table, stats } = countingTable(createMemoryTable('billing'));
    const { metering } = setup(table);
    consumed(await metering.consume(request({ idempotencyKey: 'warm', quantity: 30, allowance: 150 })));
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        metering.consume(request({ idempotencyKey: `run-${i}`, allowance: 150 })),
      ),
    );
    expect(outcomes.filter((o) => o.kind === 'consumed')).toHaveLength(120);
    expect(outcomes.filter((o) => o.kind === 'denied')).toHaveLength(80);
    expect((await counterOf(table))?.used).toBe(150);
    expect(stats.failed).toBe(0);
    expect(stats.transactions).toBeLessThanOrEqual(1 + Math.ceil(200 / 90));
  });

  it('splits a batch to stay within 100 actions when every consumption adds ledger and monitor rows', async () => {
    const { table, stats } = countingTable(createMemoryTable('billing'));
    const { metering, credits } = setup(table);
    await credits.grantCredits({
      ownerId: 'alice',
      credits: 100,
      sourceId: 'cs_1',
      description: '100 credits',
    });
    const outcomes = await Promise.all(
      Array.from({ length: 150 }, (_, i) =>
        metering.consume(request({ idempotencyKey: `run-${i}`, allowance: 0, mode: 'monitor' })),
      ),
    );
    expect(outcomes.every((o) => o.kind === 'consumed')).toBe(true);
    expect(outcomes.filter((o) => o.fromCredits === 1)).toHaveLength(100);
    expect(stats.largest).toBeLessThanOrEqual(100);
    expect(stats.failed).toBe(0);
    expect(await credits.balance('alice')).toBe(0);
    expect(await counterOf(table)).toMatchObject({ used: 150, creditsUsed: 100, overage: 50 });
    expect(await table.list('alice', { prefix: 'monitor|' })).toHaveLength(50);
    expect(await table.list('alice', { prefix: 'credits|ledger|' })).toHaveLength(101);
  });

  it('stays exact when two processes consume for one owner at once (ETag retries between them)', async () => {
    const table = createMemoryTable('billing');
    const [one, two] = [setup(table, { maxAttempts: 50 }), setup(table, { maxAttempts: 50 })];
    const outcomes = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 ? one : two).metering.consume(request({ idempotencyKey: `run-${i}`, allowance: 60 })),
      ),
    );
    expect(outcomes.filter((o) => o.kind === 'consumed')).toHaveLength(60);
    expect((await counterOf(table))?.used).toBe(60);
  });

  it('gives up with a typed error after bounded retries, consuming nothing', async () => {
    const inner = createMemoryTable('billing');
    const table: EntityTable = {
      ...inner,
      async transact() {
        throw new TransactionFailedError('0: etag_mismatch', inner.name, 0, 'etag_mismatch');
      },
    };
    const { metering } = setup(table, { maxAttempts: 3 });
    const error = await metering.consume(request({ idempotencyKey: 'run-1' })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(MeteringContentionError);
    expect(error).toBeInstanceOf(StoreError); // so the HTTP layer answers 503 "retry with the same request"
    expect(await counterOf(inner)).toBeUndefined();
    // The lane is not poisoned: the next request for the owner is processed.
    await expect(metering.consume(request({ idempotencyKey: 'run-2' }))).rejects.toBeInstanceOf(
      MeteringContentionError,
    );
  });
});

describe('metering: refund', () => {
  it('gives a consumption back once, to its period and to the credit balance with a ledger row', async () => {
    const { metering, credits, table, clock } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 5, sourceId: 'cs_1', description: '5 credits' });
    consumed(await metering.consume(request({ idempotencyKey: 'run-1', quantity: 4, allowance: 2 })));
    clock.set('2026-12-02T00:00:00.000Z'); // refunded after the period ended: still goes back to November
    const refund = await metering.refund({ ownerId: 'alice', idempotencyKey: 'run-1' });
    expect(refund).toMatchObject({
      kind: 'refunded',
      periodKey: '2026-11',
      quantity: 4,
      toAllowance: 2,
      toCredits: 2,
      used: 0,
      creditBalance: 5,
    });
    expect(await counterOf(table)).toMatchObject({ used: 0, allowanceUsed: 0, creditsUsed: 0 });
    expect(await credits.balance('alice')).toBe(5);
    const [latest] = await credits.ledger('alice');
    expect(latest).toMatchObject({ kind: 'refund', credits: 2, balanceAfter: 5, ref: 'run-1' });

    expect(await metering.refund({ ownerId: 'alice', idempotencyKey: 'run-1' })).toMatchObject({
      kind: 'already_refunded',
      refundedAt: '2026-12-02T00:00:00.000Z',
    });
    // The consumption's key still answers with its original answer.
    expect(
      await metering.consume(request({ idempotencyKey: 'run-1', quantity: 4, allowance: 2 })),
    ).toMatchObject({
      kind: 'consumed',
      replayed: true,
      fromCredits: 2,
    });
    expect((await counterOf(table))?.used).toBe(0);
  });

  it('refunds exactly once under concurrent refunds', async () => {
    const { metering, table } = setup();
    await metering.consume(request({ idempotencyKey: 'run-1', quantity: 3 }));
    await metering.consume(request({ idempotencyKey: 'run-2', quantity: 2 }));
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, () => metering.refund({ ownerId: 'alice', idempotencyKey: 'run-1' })),
    );
    expect(outcomes.filter((o) => o.kind === 'refunded')).toHaveLength(1);
    expect(outcomes.filter((o) => o.kind === 'already_refunded')).toHaveLength(9);
    expect((await counterOf(table))?.used).toBe(2);
  });

  it('says clearly when there is nothing to refund', async () => {
    const { metering } = setup();
    expect(await metering.refund({ ownerId: 'alice', idempotencyKey: 'never' })).toEqual({
      kind: 'not_found',
      ownerId: 'alice',
      idempotencyKey: 'never',
    });
    await metering.consume(request({ idempotencyKey: 'denied', quantity: 11 }));
    expect(await metering.refund({ ownerId: 'alice', idempotencyKey: 'denied' })).toMatchObject({
      kind: 'not_consumed',
    });
  });
});

describe('credits', () => {
  it('grants once per source, sequentially and concurrently', async () => {
    const { credits } = setup();
    const first = await credits.grantCredits({
      ownerId: 'alice',
      credits: 5000,
      sourceId: 'cs_test_1',
      description: '5k',
    });
    expect(first).toMatchObject({ kind: 'granted', creditBalance: 5000 });
    const again = await credits.grantCredits({
      ownerId: 'alice',
      credits: 5000,
      sourceId: 'cs_test_1',
      description: '5k',
    });
    expect(again).toMatchObject({
      kind: 'duplicate',
      credits: 5000,
      grantedAt: first.kind === 'granted' ? first.grantedAt : '',
    });
    const burst = await Promise.all(
      Array.from({ length: 10 }, () =>
        credits.grantCredits({ ownerId: 'alice', credits: 50, sourceId: 'pi_2', description: '50' }),
      ),
    );
    expect(burst.filter((o) => o.kind === 'granted')).toHaveLength(1);
    expect(await credits.balance('alice')).toBe(5050);
    expect(await credits.balance('bob')).toBe(0);
  });

  it('grants once across processes (no shared lanes)', async () => {
    const table = createMemoryTable('billing');
    const clock = testClock();
    const owners = createOwnerStore({ table, clock });
    const processes = [createCredits({ table, owners, clock }), createCredits({ table, owners, clock })];
    const outcomes = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        processes[i % 2]?.grantCredits({ ownerId: 'alice', credits: 7, sourceId: 'cs_x', description: '7' }),
      ),
    );
    expect(outcomes.filter((o) => o?.kind === 'granted')).toHaveLength(1);
    expect(await processes[0]?.balance('alice')).toBe(7);
  });

  it('keeps an append-only ledger of grants, draws and refunds, newest first', async () => {
    const { credits, metering, clock } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 10, sourceId: 'cs_1', description: 'pack' });
    clock.set('2026-11-16T00:00:00.000Z');
    await metering.consume(request({ idempotencyKey: 'run-1', quantity: 3, allowance: 0 }));
    clock.set('2026-11-17T00:00:00.000Z');
    await metering.refund({ ownerId: 'alice', idempotencyKey: 'run-1' });
    const ledger = await credits.ledger('alice');
    expect(ledger.map((e) => [e.kind, e.credits, e.balanceAfter])).toEqual([
      ['refund', 3, 10],
      ['draw', -3, 7],
      ['grant', 10, 10],
    ]);
    expect(await credits.ledger('alice', { limit: 1 })).toHaveLength(1);
  });

  it('validates grants', async () => {
    const { credits } = setup();
    for (const bad of [
      { ownerId: 'alice', credits: 0, sourceId: 'cs_1', description: 'x' },
      { ownerId: 'alice', credits: 1.5, sourceId: 'cs_1', description: 'x' },
      { ownerId: 'alice', credits: 1, sourceId: 'cs/1', description: 'x' },
      { ownerId: 'alice', credits: 1, sourceId: 'cs_1', description: '' },
    ]) {
      await expect(credits.grantCredits(bad)).rejects.toMatchObject({
        kind: 'validation',
        code: 'invalid_credit_grant',
      });
    }
  });
});
