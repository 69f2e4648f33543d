import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import type { Clock } from '../../src/billing/clock.js';
import { createCredits } from '../../src/billing/credits.js';
import { type ConsumeRequest, createMetering } from '../../src/billing/metering.js';
import { createOwnerLanes } from '../../src/billing/metering-lanes.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import { calendarMonth, type UsagePeriod } from '../../src/billing/periods.js';
import { createRollover, type RolloverOptions } from '../../src/billing/rollover.js';
import { type EntityTable, StoreError } from '../../src/billing/store.js';
import { usageRowKey } from '../../src/billing/usage.js';

/** A clock tests move by hand. (Local, so these tests do not load the composition root.) */
function testClock(start = '2026-11-15T12:00:00.000Z'): Clock & { set(iso: string): void } {
  let now = new Date(start);
  return { now: () => new Date(now), set: (iso) => (now = new Date(iso)) };
}

const september: UsagePeriod = calendarMonth(new Date('2026-09-15T00:00:00Z'));
const october: UsagePeriod = calendarMonth(new Date('2026-10-15T00:00:00Z'));
const november: UsagePeriod = calendarMonth(new Date('2026-11-15T00:00:00Z'));
const december: UsagePeriod = calendarMonth(new Date('2026-12-15T00:00:00Z'));
/** Comfortably after November ended and settled. */
const december2 = new Date('2026-12-02T06:00:00.000Z');

type WriteKind = 'create' | 'upsert' | 'update' | 'delete' | 'transact';

/**
 * A table that crashes (throws, having written nothing) on the write `shouldFail` picks: a process dying
 * at exactly that point, so a test can prove that running again repairs it.
 */
function crashingTable(
  inner: EntityTable,
  shouldFail: (write: { kind: WriteKind; partitionKey: string; rowKey: string }) => boolean,
): EntityTable {
  const check = (kind: WriteKind, partitionKey: string, rowKey: string) => {
    if (shouldFail({ kind, partitionKey, rowKey })) {
      throw new StoreError(`simulated crash at ${kind} ${partitionKey}/${rowKey}`, inner.name);
    }
  };
  return {
    ...inner,
    async create(pk, rk, props) {
      check('create', pk, rk);
      return inner.create(pk, rk, props);
    },
    async upsert(pk, rk, props) {
      check('upsert', pk, rk);
      return inner.upsert(pk, rk, props);
    },
    async update(pk, rk, props, etag) {
      check('update', pk, rk);
      return inner.update(pk, rk, props, etag);
    },
    async delete(pk, rk, etag) {
      check('delete', pk, rk);
      return inner.delete(pk, rk, etag);
    },
    async transact(pk, actions) {
      check('transact', pk, actions.map((a) => a.rowKey).join(','));
      return inner.transact(pk, actions);
    },
  };
}

function setup(options: RolloverOptions = {}) {
  const table = createMemoryTable('billing');
  const clock = testClock();
  const lanes = createOwnerLanes();
  const owners = createOwnerStore({ table, clock });
  const metering = createMetering({ table, owners, clock, lanes });
  const credits = createCredits({ table, owners, clock, lanes });
  const rolloverOn = (on: EntityTable) => createRollover({ table: on, clock, options });
  const consume = (ownerId: string, key: string, quantity: number, period = november, allowance = 100) =>
    metering.consume({
      ownerId,
      meter: 'executions',
      quantity,
      idempotencyKey: key,
      terms: { allowance, period, mode: 'enforce' },
    } satisfies ConsumeRequest);
  return { table, clock, metering, credits, rollover: rolloverOn(table), rolloverOn, consume };
}

const indexRows = (table: EntityTable, day: string) => table.list(`rollover|${day}`);

describe('rollover: closing ended periods', () => {
  it('writes a record per ended period and removes its index row; open periods wait', async () => {
    const { table, rollover, consume, clock } = setup();
    await consume('alice', 'a1', 7);
    await consume('bob', 'b1', 3);
    clock.set('2026-12-01T10:00:00.000Z');
    await consume('alice', 'a2', 2, december);
    expect(await indexRows(table, '2026-12-01')).toHaveLength(2);

    // Before the end (plus settling time) nothing is closed.
    const early = await rollover.run({ now: new Date('2026-12-01T00:05:00.000Z') });
    expect(early).toMatchObject({ complete: true, closed: 0 });
    expect(await indexRows(table, '2026-12-01')).toHaveLength(2);

    const report = await rollover.run({ now: december2 });
    expect(report).toMatchObject({
      complete: true,
      closed: 2,
      alreadyClosed: 0,
      withoutUsage: 0,
      invalid: [],
    });
    expect((await table.get('alice', 'record|executions|2026-11'))?.props).toEqual({
      meter: 'executions',
      periodKey: '2026-11',
      periodStart: '2026-11-01T00:00:00.000Z',
      periodEnd: '2026-12-01T00:00:00.000Z',
      used: 7,
      allowanceUsed: 7,
      creditsUsed: 0,
      overage: 0,
      allowance: 100,
      closedAt: december2.toISOString(),
    });
    expect((await table.get('bob', 'record|executions|2026-11'))?.props.used).toBe(3);
    expect(await indexRows(table, '2026-12-01')).toHaveLength(0);
    // December is still open: its index row stays, its counter is untouched.
    expect(await indexRows(table, '2027-01-01')).toHaveLength(1);
    expect(await table.get('alice', 'record|executions|2026-12')).toBeUndefined();
    // Nothing was reset: the counter is still there, and remains the source of truth.
    expect((await table.get('alice', usageRowKey('executions', november)))?.props.used).toBe(7);
  });

  it('is idempotent: a second run closes nothing and changes nothing', async () => {
    const { table, rollover, consume } = setup();
    await consume('alice', 'a1', 7);
    await rollover.run({ now: december2 });
    const record = await table.get('alice', 'record|executions|2026-11');
    const again = await rollover.run({ now: december2 });
    expect(again).toMatchObject({ complete: true, closed: 0, alreadyClosed: 0 });
    expect((await table.get('alice', 'record|executions|2026-11'))?.etag).toBe(record?.etag);
  });

  it('resumes after a crash between writing a record and removing the index rows', async () => {
    const { table, rollover, rolloverOn, consume } = setup();
    for (let i = 0; i < 5; i++) await consume(`owner${i}`, `k${i}`, i + 1);
    const crashing = rolloverOn(
      crashingTable(table, (w) => w.kind === 'transact' && w.partitionKey.startsWith('rollover|')),
    );
    await expect(crashing.run({ now: december2 })).rejects.toBeInstanceOf(StoreError);
    // Every record was written, no index row was removed.
    expect(await indexRows(table, '2026-12-01')).toHaveLength(5);

    const report = await rollover.run({ now: december2 });
    expect(report).toMatchObject({ complete: true, closed: 0, alreadyClosed: 5 });
    expect(await indexRows(table, '2026-12-01')).toHaveLength(0);
    for (let i = 0; i < 5; i++) {
      expect((await table.get(`owner${i}`, 'record|executions|2026-11'))?.props.used).toBe(i + 1);
    }
  });

  it('resumes after a crash half-way through writing records', async () => {
    const { table, rollover, rolloverOn, consume } = setup({ concurrency: 1 });
    for (let i = 0; i < 5; i++) await consume(`owner${i}`, `k${i}`, i + 1);
    const crashing = rolloverOn(
      crashingTable(
        table,
        (w) => w.kind === 'transact' && w.partitionKey === 'owner3' && w.rowKey.startsWith('record|'),
      ),
    );
    await expect(crashing.run({ now: december2 })).rejects.toThrow(/simulated crash/);
    expect(await table.get('owner2', 'record|executions|2026-11')).toBeDefined();
    expect(await table.get('owner3', 'record|executions|2026-11')).toBeUndefined();

    const report = await rollover.run({ now: december2 });
    expect(report).toMatchObject({ complete: true, closed: 2, alreadyClosed: 3 });
    expect(await indexRows(table, '2026-12-01')).toHaveLength(0);
    for (let i = 0; i < 5; i++) {
      expect((await table.get(`owner${i}`, 'record|executions|2026-11'))?.props.used).toBe(i + 1);
    }
  });

  it('stops at its time budget and the next run finishes', async () => {
    const { table, rollover, consume } = setup();
    await consume('alice', 'a1', 1);
    const stopped = await rollover.run({ now: december2, budgetMs: 0 });
    expect(stopped).toMatchObject({ complete: false, closed: 0 });
    expect(await indexRows(table, '2026-12-01')).toHaveLength(1);
    const finished = await rollover.run({ now: december2 });
    expect(finished).toMatchObject({ complete: true, closed: 1 });
  });

  it('removes the index row of a period whose counter was never committed', async () => {
    const { table, rollover } = setup();
    // What consume leaves when it crashes between the index write and the transaction.
    await table.upsert('rollover|2026-12-01', 'carol|executions|2026-11', {
      ownerId: 'carol',
      meter: 'executions',
      periodKey: '2026-11',
      periodStart: november.start.toISOString(),
      periodEnd: november.end.toISOString(),
    });
    const report = await rollover.run({ now: december2 });
    expect(report).toMatchObject({ withoutUsage: 1, closed: 0 });
    expect(await indexRows(table, '2026-12-01')).toHaveLength(0);
    expect(await table.get('carol', 'record|executions|2026-11')).toBeUndefined();
  });

  it('keeps a cursor, and still finds index rows written late within the look-back window', async () => {
    const { table, rollover, consume } = setup({ lookbackDays: 7 });
    await consume('alice', 'a1', 1);
    expect((await rollover.run({ now: december2 })).cursor).toBe('2026-12-02');
    // A counter created after its period ended (a late consumption for October).
    await consume('bob', 'late', 4, october);
    const report = await rollover.run({ now: new Date('2026-12-05T00:00:00.000Z') });
    expect(report.closed).toBe(0); // 2026-11-01 is before the look-back window of the cursor
    const wide = createRollover({ table, clock: testClock(), options: { lookbackDays: 40 } });
    expect(await wide.run({ now: new Date('2026-12-05T00:00:00.000Z') })).toMatchObject({ closed: 1 });
    expect((await table.get('bob', 'record|executions|2026-10'))?.props.used).toBe(4);
  });

  it('reports an index row it cannot read and leaves it in place', async () => {
    const { table, rollover } = setup();
    await table.upsert('rollover|2026-12-01', 'broken', { periodEnd: '2026-12-01T00:00:00.000Z' });
    const report = await rollover.run({ now: december2 });
    expect(report.invalid).toEqual(['rollover|2026-12-01/broken']);
    expect(report.cursor).toBe('2026-12-01');
    expect(await indexRows(table, '2026-12-01')).toHaveLength(1);
  });
});

describe('rollover: history', () => {
  it('is the same before and after the job ran; the record adds the snapshot', async () => {
    const { rollover, consume, clock, credits } = setup();
    await credits.grantCredits({ ownerId: 'alice', credits: 10, sourceId: 'cs_1', description: 'pack' });
    clock.set('2026-10-20T00:00:00.000Z');
    await consume('alice', 'oct', 5, october, 3);
    clock.set('2026-11-20T00:00:00.000Z');
    await consume('alice', 'nov', 7);
    clock.set('2026-12-02T06:00:00.000Z');
    await consume('alice', 'dec', 2, december);
    const range = {
      ownerId: 'alice',
      meter: 'executions',
      from: new Date('2026-10-01'),
      to: new Date('2027-01-01'),
    } as const;

    const before = await rollover.history(range);
    expect(before.periods.map((p) => [p.periodKey, p.status, p.used, p.record])).toEqual([
      ['2026-10', 'ended', 5, null],
      ['2026-11', 'ended', 7, null],
      ['2026-12', 'open', 2, null],
    ]);
    expect(before.periods[0]).toMatchObject({ fromAllowance: 3, fromCredits: 2, allowance: 3 });
    expect(before.totals).toEqual({ used: 14, fromAllowance: 12, fromCredits: 2, overage: 0 });

    await rollover.run({ now: new Date('2026-12-02T06:00:00.000Z') });
    const after = await rollover.history(range);
    expect(after.totals).toEqual(before.totals);
    expect(after.periods.map((p) => [p.periodKey, p.status, p.used, p.record?.used ?? null])).toEqual([
      ['2026-10', 'closed', 5, 5],
      ['2026-11', 'closed', 7, 7],
      ['2026-12', 'open', 2, null],
    ]);
  });

  it('shows a refund after the close in the counter, beside the unchanged snapshot', async () => {
    const { rollover, consume, metering, clock } = setup();
    await consume('alice', 'nov', 7);
    await rollover.run({ now: december2 });
    clock.set(december2.toISOString());
    await metering.refund({ ownerId: 'alice', idempotencyKey: 'nov' });
    const history = await rollover.history({
      ownerId: 'alice',
      meter: 'executions',
      from: november.start,
      to: november.end,
    });
    expect(history.periods).toHaveLength(1);
    expect(history.periods[0]).toMatchObject({ status: 'closed', used: 0, record: { used: 7 } });
  });

  it('returns only periods overlapping [from, to), and reads counters written before metering', async () => {
    const { table, rollover, consume } = setup();
    await consume('alice', 'oct', 1, october);
    await consume('alice', 'nov', 2);
    await table.upsert('alice', usageRowKey('executions', september), { used: 9 }); // a bare counter: only `used`
    const nov = await rollover.history({
      ownerId: 'alice',
      meter: 'executions',
      from: november.start,
      to: november.end,
    });
    expect(nov.periods.map((p) => p.periodKey)).toEqual(['2026-11']);
    const all = await rollover.history({
      ownerId: 'alice',
      meter: 'executions',
      from: new Date('2026-01-01'),
      to: new Date('2027-01-01'),
    });
    expect(all.periods.map((p) => [p.periodKey, p.used, p.periodEnd])).toEqual([
      ['2026-09', 9, '2026-10-01T00:00:00.000Z'],
      ['2026-10', 1, '2026-11-01T00:00:00.000Z'],
      ['2026-11', 2, '2026-12-01T00:00:00.000Z'],
    ]);
    await expect(
      rollover.history({ ownerId: 'alice', meter: 'executions', from: november.end, to: november.start }),
    ).rejects.toMatchObject({ kind: 'validation', code: 'invalid_history_request' });
  });
});
