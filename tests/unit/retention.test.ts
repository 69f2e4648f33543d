import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { createCredits } from '../../src/billing/credits.js';
import { createMetering } from '../../src/billing/metering.js';
import { createOwnerLanes } from '../../src/billing/metering-lanes.js';
import { consumeMarkerKey, grantMarkerKey, LEDGER_PREFIX } from '../../src/billing/metering-rows.js';
import { BALANCE_ROW, SNAPSHOT_PREFIX } from '../../src/billing/owner/keys.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import { calendarMonth } from '../../src/billing/periods.js';
import { withRetentionIndex } from '../../src/billing/retention/index-writer.js';
import { GRANT_MARKER_DAYS } from '../../src/billing/retention/policy.js';
import { createRetention } from '../../src/billing/retention/prune.js';
import type { EntityTable, StoredEntity } from '../../src/billing/store.js';
import { manualClock } from '../support/memory.js';
import { countingTables, faultyTables } from '../support/tables.js';

const RETENTION_DAYS = 90;

function setup() {
  const stored = createMemoryTable('billing');
  const clock = manualClock('2026-01-05T10:00:00.000Z');
  const table = withRetentionIndex(stored, { clock, retentionDays: RETENTION_DAYS });
  /** A fresh process: nothing remembered in memory, so replays are answered from the stored markers. */
  const process = () => {
    const lanes = createOwnerLanes();
    const owners = createOwnerStore({ table, clock });
    return {
      metering: createMetering({ table, owners, clock, lanes }),
      credits: createCredits({ table, owners, clock, lanes }),
    };
  };
  const retentionOn = (on: EntityTable) =>
    createRetention({ table: on, clock, options: { retentionDays: RETENTION_DAYS } });
  /** Beyond the allowance of 0, so each unit draws a credit and writes a ledger row. */
  const consume = (ownerId: string, key: string, quantity: number, app = process()) =>
    app.metering.consume({
      ownerId,
      meter: 'executions',
      quantity,
      idempotencyKey: key,
      terms: { allowance: 0, period: calendarMonth(clock.now()), mode: 'enforce' },
    });
  return { stored, table, clock, process, consume, retention: retentionOn(table), retentionOn };
}

async function allRows(table: EntityTable): Promise<StoredEntity[]> {
  const rows: StoredEntity[] = [];
  for await (const row of table.scan({})) rows.push(row);
  return rows;
}

/** The owner's authoritative state: the snapshot rows (balance, counters, version), etags included. */
const snapshotOf = async (table: EntityTable, ownerId: string) =>
  table.list(ownerId, { prefix: SNAPSHOT_PREFIX });

const keysOf = (rows: readonly StoredEntity[]) =>
  rows.map((row) => `${row.partitionKey}/${row.rowKey}`).sort();

/** January: a pack and a consumption. March: another consumption. */
async function history(t: ReturnType<typeof setup>) {
  await t
    .process()
    .credits.grantCredits({ ownerId: 'alice', credits: 100, sourceId: 'cs_jan', description: 'pack' });
  await t.consume('alice', 'run-jan', 5);
  await t.consume('bob', 'bob-jan', 0 + 1).catch(() => undefined); // bob has no credits: denied, marker kept
  t.clock.set('2026-03-20T10:00:00.000Z');
  await t.consume('alice', 'run-mar', 3);
}

describe('retention: pruning markers and ledger rows', () => {
  it('lists an owner in the month after its rows fall due, once per month and process', async () => {
    const stored = createMemoryTable('billing');
    const counted = countingTables({ billing: stored });
    const clock = manualClock('2026-01-05T10:00:00.000Z');
    const table = withRetentionIndex(counted.tables.billing, { clock, retentionDays: RETENTION_DAYS });
    const owners = createOwnerStore({ table, clock });
    const metering = createMetering({ table, owners, clock });
    for (const key of ['k1', 'k2', 'k3']) {
      await metering.consume({
        ownerId: 'alice',
        meter: 'executions',
        quantity: 1,
        idempotencyKey: key,
        terms: { allowance: 10, period: calendarMonth(clock.now()), mode: 'enforce' },
      });
    }
    // 2026-01-05 + 90 days = 2026-04-05: due in April, listed in May.
    expect((await stored.list('retention|2026-05')).map((row) => row.rowKey)).toEqual(['alice']);
    expect(counted.log.calls.filter((c) => c.partition.startsWith('retention|'))).toHaveLength(1);
  });

  it('prunes what is past retention, keeps the rest, and never changes a balance or a counter', async () => {
    const t = setup();
    await history(t);
    const before = { alice: await snapshotOf(t.stored, 'alice'), bob: await snapshotOf(t.stored, 'bob') };
    const balance = await t.process().credits.balance('alice');
    expect(balance).toBe(92);

    t.clock.set('2026-05-02T03:00:00.000Z');
    const report = await t.retention.run();
    expect(report).toMatchObject({ complete: true, owners: 2, pruned: { consume: 2, grant: 0, ledger: 2 } });

    expect(await t.stored.get('alice', consumeMarkerKey('run-jan'))).toBeUndefined();
    expect(await t.stored.get('bob', consumeMarkerKey('bob-jan'))).toBeUndefined();
    expect(await t.stored.get('alice', consumeMarkerKey('run-mar'))).toBeDefined();
    // Grant markers are kept far longer: a late refund or dispute still finds what was granted.
    expect(await t.stored.get('alice', grantMarkerKey('cs_jan'))).toBeDefined();
    const ledger = await t.stored.list('alice', { prefix: LEDGER_PREFIX });
    expect(ledger.map((row) => row.props.ref)).toEqual(['run-mar']);

    // Deleting history changed no state: the snapshot rows are the very same rows (same etags).
    expect(await snapshotOf(t.stored, 'alice')).toEqual(before.alice);
    expect(await snapshotOf(t.stored, 'bob')).toEqual(before.bob);
    expect(await t.process().credits.balance('alice')).toBe(balance);
    expect((await t.stored.get('alice', BALANCE_ROW))?.props.balance).toBe(92);

    // Owners with rows still to keep are listed again for next month; bob has none left.
    expect((await t.stored.list('retention|2026-06')).map((row) => row.rowKey)).toEqual(['alice']);
    expect(await t.stored.list('retention|2026-05')).toEqual([]);
  });

  it('a retry within retention still counts once after older markers were pruned', async () => {
    const t = setup();
    await history(t);
    t.clock.set('2026-05-02T03:00:00.000Z');
    await t.retention.run();
    const counter = await snapshotOf(t.stored, 'alice');

    // A new process, so the answer comes from the stored marker, not from memory.
    const retry = await t.consume('alice', 'run-mar', 3);
    expect(retry).toMatchObject({ kind: 'consumed', replayed: true, fromCredits: 3 });
    expect(await snapshotOf(t.stored, 'alice')).toEqual(counter);
    // The pack's grant is still once: its marker outlives the ledger row.
    const again = await t
      .process()
      .credits.grantCredits({ ownerId: 'alice', credits: 100, sourceId: 'cs_jan', description: 'pack' });
    expect(again.kind).toBe('duplicate');
  });

  it(`prunes grant markers after ${GRANT_MARKER_DAYS} days, and then stops visiting the owner`, async () => {
    const t = setup();
    await history(t);
    for (const at of ['2026-05-02', '2026-07-01', '2027-06-01', '2028-01-10', '2028-02-03']) {
      t.clock.set(`${at}T03:00:00.000Z`);
      expect((await t.retention.run()).complete).toBe(true);
    }
    expect(await t.stored.get('alice', grantMarkerKey('cs_jan'))).toBeUndefined();
    expect(await t.stored.list('alice', { prefix: 'consume|' })).toEqual([]);
    expect(await t.stored.list('alice', { prefix: LEDGER_PREFIX })).toEqual([]);
    expect((await t.stored.get('alice', BALANCE_ROW))?.props.balance).toBe(92);
    const index = (await allRows(t.stored)).filter(
      (row) => row.partitionKey.startsWith('retention|') && row.partitionKey !== 'retention|state',
    );
    expect(index).toEqual([]);
  });

  it('is bounded per run: a small row budget stops it, and the next runs finish the same work', async () => {
    const reference = setup();
    const bounded = setup();
    for (const t of [reference, bounded]) {
      for (let owner = 0; owner < 12; owner++) {
        await t.process().credits.grantCredits({
          ownerId: `o${owner}`,
          credits: 50,
          sourceId: `cs_${owner}`,
          description: 'pack',
        });
        for (let run = 0; run < 8; run++) await t.consume(`o${owner}`, `o${owner}-r${run}`, 1);
      }
      t.clock.set('2026-05-02T03:00:00.000Z');
    }
    await reference.retention.run();
    let runs = 0;
    let report = await bounded.retention.run({ maxRows: 5 });
    while (!report.complete && runs++ < 200) report = await bounded.retention.run({ maxRows: 5 });
    expect(runs).toBeGreaterThan(3);
    const stable = (rows: StoredEntity[]) =>
      keysOf(rows.filter((row) => row.partitionKey !== 'retention|state'));
    expect(stable(await allRows(bounded.stored))).toEqual(stable(await allRows(reference.stored)));
  });

  describe('crash safety: every storage call of a run fails in turn, and running again converges', () => {
    it.each(['before', 'after'] as const)('failing %s the call takes effect', async (mode) => {
      const reference = setup();
      await history(reference);
      reference.clock.set('2026-05-02T03:00:00.000Z');
      await reference.retention.run();
      const expected = keysOf(await allRows(reference.stored));

      let failures = 0;
      for (let n = 1; n < 500; n++) {
        const t = setup();
        await history(t);
        t.clock.set('2026-05-02T03:00:00.000Z');
        const faulty = faultyTables({ billing: t.table });
        faulty.faults.failCall(n, mode);
        const failed = await t
          .retentionOn(faulty.tables.billing)
          .run()
          .then(
            () => false,
            () => true,
          );
        if (!failed) break; // n is past the run's last call: every call has failed once
        failures++;
        faulty.faults.failCall(0, mode);
        await t.retention.run();
        expect(keysOf(await allRows(t.stored))).toEqual(expected);
        expect((await t.stored.get('alice', BALANCE_ROW))?.props.balance).toBe(92);
      }
      expect(failures).toBeGreaterThan(10);
    });
  });
});
