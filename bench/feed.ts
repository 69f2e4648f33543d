import { createAzureTable } from '../src/adapters/tables/azure-table.js';
import { observeTable } from '../src/adapters/tables/observed-table.js';
import { OUTBOX_PREFIX } from '../src/billing/feed/outbox.js';
import type { EntityTable } from '../src/billing/store.js';
import { createServices, type Services } from '../src/composition.js';
import { loadConfig } from '../src/config.js';
import { withLocalDefaults } from '../src/local/defaults.js';
import { BenchError, type Measured, measure, median, sized } from './measure.js';

/**
 * What the entitlement feed's outbox costs (part of `npm run bench`, in this process, on the bench's
 * Azurite): a change that moves an owner's entitlements (the 5th workflow of an organization on the free
 * plan, created, then deleted: each exhausts or frees `workflows_per_org`) with the outbox, beside the
 * same change without it, in the same run; and, counted at the storage port, the actions each such
 * transaction carries (the outbox must add at most one) and the storage calls of a check with and
 * without `minVersion` (versioned checks must cost no extra round trip).
 */

const OWNERS = 8;
const OPS = sized(600, 120);
const ROUNDS = sized(3, 1);

interface Transactions {
  /** Actions of each transaction that changed a snapshot (carried `s|o|ver`). */
  readonly sizes: number[];
  /** Outbox rows in each of them. */
  readonly outboxRows: number[];
}

/** An Azurite table whose storage calls are counted (round trips, as the issue counts them). */
function countedTable(connectionString: string, name: string, calls: { n: number }): EntityTable {
  return observeTable(
    createAzureTable({ kind: 'connectionString', connectionString }, name),
    (_m, _p, run) => {
      calls.n++;
      return run();
    },
  );
}

export interface FeedBench {
  readonly results: readonly Measured[];
  readonly feed: Record<string, unknown>;
}

export async function benchFeed(connectionString: string, prefix: string): Promise<FeedBench> {
  const calls = { n: 0 };
  const build = (outbox: boolean, label: string, sendDrains = true) => {
    const seen: Transactions = { sizes: [], outboxRows: [] };
    const tablePrefix = `${prefix}${label}`;
    const raw = countedTable(connectionString, `${tablePrefix}billing`, calls);
    // Record what reaches storage: below the outbox, so its row is counted in the transaction.
    const billing: EntityTable = {
      ...raw,
      async transact(partitionKey, actions) {
        if (actions.some((a) => a.rowKey === 's|o|ver')) {
          seen.sizes.push(actions.length);
          seen.outboxRows.push(actions.filter((a) => a.rowKey.startsWith(OUTBOX_PREFIX)).length);
        }
        return raw.transact(partitionKey, actions);
      },
    };
    const services = createServices(
      loadConfig(
        withLocalDefaults({
          ...process.env,
          BILLING_STORAGE_CONNECTION: connectionString,
          BILLING_TABLE_PREFIX: tablePrefix,
          ENTITLEMENT_FEED_QUEUE_NAME: `${label}-feed`,
        }),
      ),
      {
        tables: {
          directory: countedTable(connectionString, `${tablePrefix}directory`, calls),
          billing,
        },
        outbox,
        // Drain requests dropped: isolates what the outbox's own writes cost from the queue send.
        ...(sendDrains
          ? {}
          : { queue: { name: 'dropped', send: async () => undefined, ping: async () => undefined } }),
      },
    );
    return { services, seen };
  };

  const seed = async (services: Services) => {
    for (let o = 0; o < OWNERS; o++) {
      await services.directory.putOrg(`fo-${o}`, { creatorId: `fu-${o}` });
      for (let w = 1; w <= 4; w++)
        await services.directory.putWorkflow(`fw-${o}-${w}`, {
          workspace: { kind: 'org', orgId: `fo-${o}` },
          nodeCount: 1,
        });
    }
  };

  /** One change per op, each owner's changes one after another (8 owners in parallel). */
  const toggles = (services: Services) => {
    const lanes: Promise<unknown>[] = Array.from({ length: OWNERS }, () => Promise.resolve());
    const present: boolean[] = Array.from({ length: OWNERS }, () => false);
    return (i: number) => {
      const o = i % OWNERS;
      const next = (lanes[o] ?? Promise.resolve()).then(async () => {
        const id = `fw-${o}-5`;
        if (present[o]) await services.directory.deleteWorkflow(id);
        else
          await services.directory.putWorkflow(id, {
            workspace: { kind: 'org', orgId: `fo-${o}` },
            nodeCount: 1,
          });
        present[o] = !present[o];
      });
      lanes[o] = next;
      return next;
    };
  };

  const without = build(false, 'nofeed');
  const withFeed = build(true, 'feed');
  const noSend = build(true, 'feednosend', false);
  await seed(without.services);
  await seed(withFeed.services);
  await seed(noSend.services);
  // Only the measured changes' transactions are counted.
  for (const { seen } of [without, withFeed, noSend]) {
    seen.sizes.length = 0;
    seen.outboxRows.length = 0;
  }
  // Alternating, so drift in the machine's load does not pass for the outbox's cost.
  const results: Measured[] = [];
  const baselineOp = toggles(without.services);
  const feedOp = toggles(withFeed.services);
  const noSendOp = toggles(noSend.services);
  for (let r = 0; r < ROUNDS; r++) {
    results.push(
      await measure(
        'baseline: change without the outbox',
        'directory PUT/DELETE of the 5th workflow of an organization (exhausts, then frees workflows_per_org), outbox off',
        OPS,
        OWNERS,
        1,
        (i) => baselineOp(i),
      ),
    );
    results.push(
      await measure(
        'change with the outbox',
        'the same change with the entitlement outbox: one more row in its transaction, the pending listing, the drain request',
        OPS,
        OWNERS,
        1,
        (i) => feedOp(i),
      ),
    );
    results.push(
      await measure(
        'change with the outbox, drain requests dropped',
        'the same, with the queue send after the commit left out (what the outbox costs in the table alone)',
        OPS,
        OWNERS,
        1,
        (i) => noSendOp(i),
      ),
    );
  }
  const of = (name: string) => results.filter((r) => r.name === name).map((r) => r.opsPerSecond);
  const withOps = median(of('change with the outbox'));
  const withoutOps = median(of('baseline: change without the outbox'));
  const noSendOps = median(of('change with the outbox, drain requests dropped'));

  const maxOutboxRows = Math.max(0, ...withFeed.seen.outboxRows);
  const published = withFeed.seen.outboxRows.filter((n) => n === 1).length;
  const snapshotTransactions = withFeed.seen.sizes.length;
  if (maxOutboxRows > 1)
    throw new BenchError('scenario_failed', `a transaction carried ${maxOutboxRows} outbox rows`);
  if (published === 0) throw new BenchError('scenario_failed', 'no change wrote an outbox row');

  // Versioned checks: the storage calls of a check with and without `minVersion`, counted at the port.
  const services = withFeed.services;
  const subject = { orgId: 'fo-0' };
  const current = (await services.entitlements.check({ subject, feature: 'workflows_per_org' })).version;
  const callsOf = async (work: () => Promise<unknown>) => {
    await work();
    const samples: number[] = [];
    for (let i = 0; i < 5; i++) {
      calls.n = 0;
      await work();
      samples.push(calls.n);
    }
    return median(samples);
  };
  const toggleCalls = async (op: (i: number) => Promise<unknown>) => callsOf(() => op(0));
  const callsPerChange = {
    withoutOutbox: await toggleCalls(baselineOp),
    withOutbox: await toggleCalls(feedOp),
  };
  const checkCalls = await callsOf(() =>
    services.entitlements.check({ subject, feature: 'workflows_per_org' }),
  );
  const versionedCalls = await callsOf(() =>
    services.entitlements.check({ subject, feature: 'workflows_per_org', minVersion: current }),
  );

  return {
    results,
    feed: {
      change:
        'PUT/DELETE of the 5th workflow of an organization on the free plan (every one moves the entitlement view)',
      opsPerSecondMedian: {
        withOutbox: withOps,
        withoutOutbox: withoutOps,
        withOutboxNoDrainSend: noSendOps,
      },
      throughputRatioWithOverWithout: Math.round((withOps / withoutOps) * 100) / 100,
      throughputRatioNoDrainSendOverWithout: Math.round((noSendOps / withoutOps) * 100) / 100,
      tableCallsPerChange: callsPerChange,
      actionsPerChangeTransaction: {
        withOutboxMedian: median(withFeed.seen.sizes),
        withoutOutboxMedian: median(without.seen.sizes),
        maxOutboxRowsInOneTransaction: maxOutboxRows,
        transactionsWithAnOutboxRow: published,
        snapshotTransactions,
      },
      storageCallsPerCheck: { withoutMinVersion: checkCalls, withMinVersion: versionedCalls },
    },
  };
}
