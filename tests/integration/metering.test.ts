import { describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { systemClock } from '../../src/billing/clock.js';
import { createCredits } from '../../src/billing/credits.js';
import { type ConsumeOutcome, type ConsumeRequest, createMetering } from '../../src/billing/metering.js';
import { createOwnerLanes } from '../../src/billing/metering-lanes.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import { currentPeriod } from '../../src/billing/periods.js';
import type { EntityTable, TransactionAction } from '../../src/billing/store.js';
import { usageRowKey } from '../../src/billing/usage.js';
import { uniquePrefix } from '../support/harness.js';

/** This file's own `billing` table on the run's Azurite, counting transactions. */
function billingTable() {
  const inner = createAzureTable(
    { kind: 'connectionString', connectionString: inject('azuriteConnection') },
    `${uniquePrefix()}billing`,
  );
  const stats = { transactions: 0, failed: 0 };
  const table: EntityTable = {
    ...inner,
    async transact(partitionKey: string, actions: readonly TransactionAction[]) {
      stats.transactions++;
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

/** One process's metering and credits (shared lanes, as the composition root should wire them). */
function processOn(table: EntityTable) {
  const lanes = createOwnerLanes();
  const owners = createOwnerStore({ table, clock: systemClock });
  return {
    metering: createMetering({ table, owners, clock: systemClock, lanes, options: { maxAttempts: 30 } }),
    credits: createCredits({ table, owners, clock: systemClock, lanes }),
  };
}

const period = currentPeriod(new Date(), undefined);
const consumeOf = (ownerId: string, idempotencyKey: string, allowance: number | null): ConsumeRequest => ({
  ownerId,
  meter: 'executions',
  quantity: 1,
  idempotencyKey,
  terms: { allowance, period, mode: 'enforce' },
});
const usedBy = async (table: EntityTable, ownerId: string) =>
  (await table.get(ownerId, usageRowKey('executions', period)))?.props.used;
const comparable = (outcome: ConsumeOutcome) => JSON.stringify({ ...outcome, replayed: false });

describe('metering on Azurite', () => {
  it('allows exactly 120 of 200 concurrent consumes of 1 when 120 remain, in a few transactions', async () => {
    const { table, stats } = billingTable();
    const { metering } = processOn(table);
    await metering.consume({ ...consumeOf('hot', 'warm-up', 1000), quantity: 880 });
    stats.transactions = 0;

    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) => metering.consume(consumeOf('hot', `run-${i}`, 1000))),
    );
    expect(outcomes.filter((o) => o.kind === 'consumed')).toHaveLength(120);
    const denied = outcomes.filter((o) => o.kind === 'denied');
    expect(denied).toHaveLength(80);
    expect(denied[0]).toMatchObject({ reason: 'limit_exceeded', remaining: 0, shortfall: 1 });
    expect(await usedBy(table, 'hot')).toBe(1000);
    // Group commit: one transaction per ~90 requests, not one (plus retries) per request.
    expect(stats.transactions).toBeLessThanOrEqual(4);
    expect(stats.failed).toBe(0);
  });

  it('counts each key once when every key is sent three times at once, through two processes', async () => {
    const { table } = billingTable();
    const processes = [processOn(table), processOn(table)];
    const keys = Array.from({ length: 100 }, (_, i) => `run-${i}`);
    const sends = keys.flatMap((key, i) => [0, 1, 2].map((copy) => ({ key, via: (i + copy) % 2 })));
    const outcomes = await Promise.all(
      sends.map(({ key, via }) => processes[via]?.metering.consume(consumeOf('dup', key, null))),
    );
    expect(await usedBy(table, 'dup')).toBe(100);
    for (const key of keys) {
      const answers = outcomes.filter((o) => o?.idempotencyKey === key);
      expect(answers).toHaveLength(3);
      expect(answers.filter((o) => o && !o.replayed)).toHaveLength(1);
      expect(new Set(answers.map((o) => (o ? comparable(o) : '')))).toHaveProperty('size', 1);
    }
  });

  it('restores a refund exactly once, to the counter and the credit balance', async () => {
    const { table } = billingTable();
    const processes = [processOn(table), processOn(table)];
    const [one] = processes;
    if (!one) throw new Error('unreachable');
    await one.credits.grantCredits({
      ownerId: 'ref',
      credits: 50,
      sourceId: 'cs_test_ref',
      description: 'pack',
    });
    const outcome = await one.metering.consume({ ...consumeOf('ref', 'run-1', 4), quantity: 10 });
    expect(outcome).toMatchObject({ kind: 'consumed', fromAllowance: 4, fromCredits: 6, creditBalance: 44 });

    const refunds = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        processes[i % 2]?.metering.refund({ ownerId: 'ref', idempotencyKey: 'run-1' }),
      ),
    );
    expect(refunds.filter((r) => r?.kind === 'refunded')).toHaveLength(1);
    expect(refunds.filter((r) => r?.kind === 'already_refunded')).toHaveLength(9);
    expect(await usedBy(table, 'ref')).toBe(0);
    expect(await one.credits.balance('ref')).toBe(50);
    const ledger = await one.credits.ledger('ref');
    expect(ledger.map((e) => e.kind)).toEqual(['refund', 'draw', 'grant']);
  });

  it('stays exact when two processes hammer one owner (ETag conflicts between them, retried)', async () => {
    const { table } = billingTable();
    const processes = [processOn(table), processOn(table)];
    const outcomes = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        processes[i % 2]?.metering.consume(consumeOf('two', `run-${i}`, 150)),
      ),
    );
    expect(outcomes.filter((o) => o?.kind === 'consumed')).toHaveLength(150);
    expect(await usedBy(table, 'two')).toBe(150);
  });

  it('grants credits once per payment, however many copies of the event arrive', async () => {
    const { table } = billingTable();
    const processes = [processOn(table), processOn(table)];
    const outcomes = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        processes[i % 2]?.credits.grantCredits({
          ownerId: 'buyer',
          credits: 5000,
          sourceId: 'cs_test_once',
          description: '5,000 execution credits',
        }),
      ),
    );
    expect(outcomes.filter((o) => o?.kind === 'granted')).toHaveLength(1);
    expect(await processes[0]?.credits.balance('buyer')).toBe(5000);
  });
});
