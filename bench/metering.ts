/**
 * `npx tsx bench/metering.ts`: usage metering on its own in-memory Azurite, each figure beside a
 * raw-storage baseline measured in the same run on the same Azurite (the same `EntityTable` adapter,
 * without the metering logic). Writes JSON to bench/results/metering-<timestamp>.json. Numbers are only
 * comparable within one file (same machine, same moment).
 *
 * - consume, many owners: 1,000 owners, 32 in flight, beside "get + transact(marker, counter)" and the
 *   same with the credit balance read in parallel with the counter (two point reads, then the transaction).
 * - consume, one hot owner: 200 in flight, beside a serial single-row ETag update loop (the most one
 *   row does without batching) and the same loop with 32 writers racing (what group commit avoids).
 * - rollover of 10,000 owners' ended periods, beside writing 10,000 rows and beside 10,000 x (read + write).
 *
 * `--quick`: one round, 100 owners, 400 consumptions per scenario, rollover of 1,000 owners.
 */
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAzureTable } from '../src/adapters/tables/azure-table.js';
import type { Clock } from '../src/billing/clock.js';
import { createMetering } from '../src/billing/metering.js';
import { snapshotRange } from '../src/billing/owner/keys.js';
import { createOwnerStore } from '../src/billing/owner/snapshot.js';
import { calendarMonth, type UsagePeriod } from '../src/billing/periods.js';
import { createRollover } from '../src/billing/rollover.js';
import {
  EntityExistsError,
  type EntityTable,
  EtagMismatchError,
  TransactionFailedError,
} from '../src/billing/store.js';
import { usageRowKey } from '../src/billing/usage.js';
import { startAzurite } from '../src/local/azurite.js';
import {
  BenchError,
  loadAverage,
  type Measured,
  measure as measureShared,
  median,
  projectRoot,
  QUICK,
  reportFile,
  round2,
  runBench,
  sized,
} from './measure.js';

const ROUNDS = sized(3, 1);
const OWNERS = sized(1_000, 100);
const MANY_CONCURRENCY = 32;
const HOT_CONCURRENCY = 200;
const OPS_PER_ROUND = sized(3_000, 400);
const SERIAL_OPS = sized(1_000, 100);
const CONTENDED_WRITERS = 32;
const CONTENDED_OPS = sized(300, 60);
const ROLLOVER_OWNERS = sized(10_000, 1_000);
const WRITE_CONCURRENCY = 32;
const fmt = (n: number) => n.toLocaleString('en-US');

/** Every scenario here: `ops` operations, `concurrency` in flight, ROUNDS rounds; `op` gets (round, i). */
const measure = (
  name: string,
  description: string,
  ops: number,
  concurrency: number,
  op: (round: number, i: number) => Promise<number | undefined>,
) => measureShared(name, description, ops, concurrency, ROUNDS, (i, round) => op(round, i));
type ScenarioResult = Measured;

/** Read-modify-write of one counter row with If-Match, retried until it lands; returns the attempts. */
async function etagIncrement(table: EntityTable, pk: string, rk: string): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    const row = await table.get(pk, rk);
    try {
      if (!row) await table.create(pk, rk, { used: 1 });
      else await table.update(pk, rk, { used: Number(row.props.used) + 1 }, row.etag);
      return attempt;
    } catch (error) {
      // A lost race is a conflict class, never a message to match: another writer created or changed the row.
      if (!(error instanceof EtagMismatchError) && !(error instanceof EntityExistsError)) throw error;
    }
  }
}

/**
 * The raw storage work of one exactly-once consume: read the counter (with `sameShape`, the owner's
 * snapshot range, as metering does), then marker + counter in one transaction. Same row keys as metering's.
 */
async function rawConsume(
  table: EntityTable,
  pk: string,
  key: string,
  period: UsagePeriod,
  sameShape = false,
): Promise<number> {
  const counterKey = usageRowKey('executions', period);
  for (let attempt = 1; ; attempt++) {
    const row = sameShape
      ? (await table.list(pk, { range: snapshotRange(new Date()) })).find((r) => r.rowKey === counterKey)
      : await table.get(pk, counterKey);
    try {
      await table.transact(pk, [
        { kind: 'create', rowKey: `consume|${key}`, props: { quantity: 1 } },
        row
          ? {
              kind: 'update',
              rowKey: counterKey,
              props: { used: Number(row.props.used) + 1 },
              etag: row.etag,
            }
          : { kind: 'create', rowKey: counterKey, props: { used: 1 } },
      ]);
      return attempt;
    } catch (error) {
      // A lost race (a conflict); a refusal (StoreRejectedError) or an outage is thrown.
      if (!(error instanceof TransactionFailedError)) throw error;
    }
  }
}

/** Runs `task(i)` for i < n with `concurrency` in flight; returns seconds taken. */
async function timed(n: number, concurrency: number, task: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) await task(next++);
    }),
  );
  return (performance.now() - started) / 1000;
}

async function main(): Promise<void> {
  const root = projectRoot;
  // Other work on the machine skews every figure here (baselines included): recorded with the results.
  const loadAtStart = loadAverage();
  const azurite = await startAzurite();
  const prefix = `mbench${Date.now().toString(36)}`;
  const table = createAzureTable(
    { kind: 'connectionString', connectionString: azurite.connectionString },
    `${prefix}billing`,
  );
  const clock: Clock = { now: () => new Date() };
  const period: UsagePeriod = calendarMonth(new Date());
  try {
    const results: ScenarioResult[] = [];

    // Many owners. Each scenario has a table of its own: Azurite answers a range query by scanning every
    // row of the table (Table Storage reads only the range), so a scenario run on a table the ones before
    // it filled would pay for their rows.
    const tableFor = (scenario: string) =>
      createAzureTable(
        { kind: 'connectionString', connectionString: azurite.connectionString },
        `${prefix}${scenario}`,
      );
    const rawTable = tableFor('raw');
    const manyBaseline = await measure(
      'baseline: get + transact(marker, counter)',
      `raw exact consume without metering logic, ${fmt(OWNERS)} owners`,
      OPS_PER_ROUND,
      MANY_CONCURRENCY,
      (round, i) => rawConsume(rawTable, `raw${i % OWNERS}`, `r${round}-${i}`, period),
    );
    const shapeTable = tableFor('shape');
    const manySameShape = await measure(
      'baseline: range read + transact (consume shape)',
      `the owner's snapshot range read, then the transaction, without metering logic, ${fmt(OWNERS)} owners`,
      OPS_PER_ROUND,
      MANY_CONCURRENCY,
      (round, i) => rawConsume(shapeTable, `shape${i % OWNERS}`, `r${round}-${i}`, period, true),
    );
    const manyTable = tableFor('many');
    const manyMetering = createMetering({
      table: manyTable,
      owners: createOwnerStore({ table: manyTable, clock }),
      clock,
    });
    const metering = createMetering({ table, owners: createOwnerStore({ table, clock }), clock });
    const many = await measure(
      'consume: many owners',
      `metering.consume of 1, ${fmt(OWNERS)} owners (one snapshot range read, one transaction)`,
      OPS_PER_ROUND,
      MANY_CONCURRENCY,
      async (round, i) => {
        await manyMetering.consume({
          ownerId: `owner${i % OWNERS}`,
          meter: 'executions',
          quantity: 1,
          idempotencyKey: `r${round}-${i}`,
          terms: { allowance: 1_000_000, period, mode: 'enforce' },
        });
        return 1;
      },
    );
    results.push(manyBaseline, manySameShape, many);

    // One hot owner.
    const serial = await measure(
      'baseline: single-row ETag update, serial',
      'get + update(If-Match) of one row, one writer: the most one row takes without batching',
      SERIAL_OPS,
      1,
      () => etagIncrement(table, 'hot-raw', 'usage|serial'),
    );
    const contended = await measure(
      `baseline: single-row ETag update, ${CONTENDED_WRITERS} racing`,
      'get + update(If-Match) of one row, retried on 412: per-request writes to a hot owner',
      CONTENDED_OPS,
      CONTENDED_WRITERS,
      () => etagIncrement(table, 'hot-raw', 'usage|contended'),
    );
    const hot = await measure(
      'consume: one hot owner',
      `metering.consume of 1 for one owner, ${HOT_CONCURRENCY} in flight (group commit)`,
      OPS_PER_ROUND,
      HOT_CONCURRENCY,
      async (round, i) => {
        await metering.consume({
          ownerId: 'hot',
          meter: 'executions',
          quantity: 1,
          idempotencyKey: `r${round}-${i}`,
          terms: { allowance: null, period, mode: 'enforce' },
        });
        return 1;
      },
    );
    results.push(serial, contended, hot);
    const hotCounter = await table.get('hot', usageRowKey('executions', period));
    if (hotCounter?.props.used !== OPS_PER_ROUND * (ROUNDS + 1)) {
      throw new BenchError(
        'wrong_result',
        `hot owner counted ${String(hotCounter?.props.used)}, expected ${OPS_PER_ROUND * (ROUNDS + 1)}`,
      );
    }

    // Rollover of 10,000 owners (1,000 with --quick). Round r closes month r of 2025 on one table, so each
    // run has a cursor, as the daily job does; the baseline writes as many fresh rows with the same concurrency.
    const rollover = createRollover({ table, clock, options: { concurrency: WRITE_CONCURRENCY } });
    await rollover.run({ now: new Date('2025-01-01T00:00:00Z') }); // first run: sets the cursor
    const seedMonth = async (month: UsagePeriod) => {
      const partition = `rollover|${month.end.toISOString().slice(0, 10)}`;
      await timed(ROLLOVER_OWNERS, 64, (i) =>
        table.create(`ro${i}`, usageRowKey('executions', month), {
          used: i % 1_000,
          allowanceUsed: i % 1_000,
          creditsUsed: 0,
          overage: 0,
          allowance: 1_000,
          meter: 'executions',
          periodKey: month.key,
          periodStart: month.start.toISOString(),
          periodEnd: month.end.toISOString(),
        }),
      );
      await timed(ROLLOVER_OWNERS / 100, 8, (chunk) =>
        table.transact(
          partition,
          Array.from({ length: 100 }, (_, j) => {
            const owner = `ro${chunk * 100 + j}`;
            return {
              kind: 'upsert' as const,
              rowKey: `${owner}|executions|${month.key}`,
              props: {
                ownerId: owner,
                meter: 'executions',
                periodKey: month.key,
                periodStart: month.start.toISOString(),
                periodEnd: month.end.toISOString(),
              },
            };
          }),
        ),
      );
    };
    const rolloverRounds: Array<{
      loadAverageBefore: readonly number[];
      rolloverSeconds: number;
      rawWriteSeconds: number;
      rawReadAndWriteSeconds: number;
      closed: number;
    }> = [];
    for (let r = 0; r < ROUNDS; r++) {
      const month = calendarMonth(new Date(Date.UTC(2025, r, 15)));
      const loadAverageBefore = loadAverage();
      await seedMonth(month);
      const started = performance.now();
      const report = await rollover.run({ now: new Date(month.end.getTime() + 3_600_000) });
      const rolloverSeconds = (performance.now() - started) / 1000;
      if (!report.complete || report.closed !== ROLLOVER_OWNERS) {
        throw new BenchError(
          'wrong_result',
          `rollover closed ${report.closed} of ${ROLLOVER_OWNERS}: ${JSON.stringify(report)}`,
        );
      }
      const rawWriteSeconds = await timed(ROLLOVER_OWNERS, WRITE_CONCURRENCY, (i) =>
        table.create(`raw-ro${i}`, `row|${r}`, { used: i, closedAt: new Date().toISOString() }),
      );
      // The per-owner requests of closing a period (read the counter, create the record), no index upkeep.
      const rawReadAndWriteSeconds = await timed(ROLLOVER_OWNERS, WRITE_CONCURRENCY, async (i) => {
        const counter = await table.get(`ro${i}`, usageRowKey('executions', month));
        await table.create(`ro${i}`, `raw-record|${r}`, { used: Number(counter?.props.used) });
      });
      rolloverRounds.push({
        loadAverageBefore,
        rolloverSeconds: round2(rolloverSeconds),
        rawWriteSeconds: round2(rawWriteSeconds),
        rawReadAndWriteSeconds: round2(rawReadAndWriteSeconds),
        closed: report.closed,
      });
      console.log(
        `rollover ${fmt(ROLLOVER_OWNERS)} owners, round ${r + 1}: ${round2(rolloverSeconds)} s  (raw: write ${round2(rawWriteSeconds)} s, read + write ${round2(rawReadAndWriteSeconds)} s)`,
      );
    }
    const rolloverResult = {
      name: `rollover: ${fmt(ROLLOVER_OWNERS)} owners`,
      description: `createRollover().run closing one ended period per owner (counter read, then the record and its audit row in one transaction per owner, index rows listed and deleted 100 per transaction), beside creating ${fmt(ROLLOVER_OWNERS)} rows in as many partitions and beside ${fmt(ROLLOVER_OWNERS)} x (read + create)`,
      owners: ROLLOVER_OWNERS,
      concurrency: WRITE_CONCURRENCY,
      rounds: rolloverRounds,
      rolloverSeconds: median(rolloverRounds.map((r) => r.rolloverSeconds)),
      rawWriteSeconds: median(rolloverRounds.map((r) => r.rawWriteSeconds)),
      rawReadAndWriteSeconds: median(rolloverRounds.map((r) => r.rawReadAndWriteSeconds)),
    };
    console.log(
      `rollover median: ${rolloverResult.rolloverSeconds} s vs raw write ${rolloverResult.rawWriteSeconds} s, raw read + write ${rolloverResult.rawReadAndWriteSeconds} s`,
    );

    const ratio = (a: ScenarioResult, b: ScenarioResult) => ({
      throughputRatio: round2(a.opsPerSecond / b.opsPerSecond),
      p50Ratio: round2(a.p50Ms / b.p50Ms),
    });
    const report = {
      command: QUICK ? 'npm run bench:quick' : 'npm run bench',
      quick: QUICK,
      at: new Date().toISOString(),
      durationSeconds: round2(performance.now() / 1000),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model ?? 'unknown',
        memoryGiB: round2(os.totalmem() / 2 ** 30),
        platform: `${os.platform()} ${os.release()}`,
        node: process.version,
        storage: 'Azurite (in-memory), started by the bench, same machine',
        loadAverage: { atStart: loadAtStart, atEnd: loadAverage() },
      },
      parameters: {
        rounds: ROUNDS,
        warmUpRounds: 1,
        owners: OWNERS,
        opsPerRound: OPS_PER_ROUND,
        serialOps: SERIAL_OPS,
        manyOwnersConcurrency: MANY_CONCURRENCY,
        hotOwnerConcurrency: HOT_CONCURRENCY,
        contendedWriters: CONTENDED_WRITERS,
        contendedOps: CONTENDED_OPS,
        rolloverOwners: ROLLOVER_OWNERS,
        writeConcurrency: WRITE_CONCURRENCY,
      },
      results,
      comparisons: {
        manyOwnersVsRawConsume: ratio(many, manyBaseline),
        manyOwnersVsSameShape: ratio(many, manySameShape),
        hotOwnerVsSerialEtagLoop: ratio(hot, serial),
        hotOwnerVsContendedEtagLoop: ratio(hot, contended),
        rolloverVsRawWrite: round2(rolloverResult.rolloverSeconds / rolloverResult.rawWriteSeconds),
        rolloverVsRawReadAndWrite: round2(
          rolloverResult.rolloverSeconds / rolloverResult.rawReadAndWriteSeconds,
        ),
      },
      rollover: rolloverResult,
    };
    const file = reportFile('metering', report.at);
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nWrote ${path.relative(root, file)}`);
  } finally {
    await azurite.stop();
  }
}

runBench(main);
