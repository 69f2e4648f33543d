import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { systemClock } from '../../src/billing/clock.js';
import {
  type ConsumeOutcome,
  type ConsumeRequest,
  createMetering,
  type Metering,
  type MeteringOptions,
} from '../../src/billing/metering.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import { currentPeriod } from '../../src/billing/periods.js';
import type { EntityTable } from '../../src/billing/store.js';
import { usageRowKey } from '../../src/billing/usage.js';
import { freePort, type RunningAzurite, startAzurite } from '../../src/local/azurite.js';
import { uniquePrefix } from '../support/harness.js';

const OWNERS = ['runner0', 'runner1', 'runner2', 'runner3'];
const period = currentPeriod(new Date(), undefined);
const request = (key: string): ConsumeRequest => ({
  ownerId: OWNERS[Number(key.split('-')[1]) % OWNERS.length] ?? 'runner0',
  meter: 'executions',
  quantity: 1,
  idempotencyKey: key,
  terms: { allowance: null, period, mode: 'enforce' },
});

/** One process's metering over `table`, reading owner snapshots from it. */
const meteringOn = (table: EntityTable, options?: MeteringOptions) =>
  createMetering({
    table,
    owners: createOwnerStore({ table, clock: systemClock }),
    clock: systemClock,
    ...(options ? { options } : {}),
  });

/**
 * Sends every key twice, each copy retried with the same key until it succeeds (as the execution
 * runtime does), 16 callers at a time. `disrupt` runs once half of the answers are in.
 */
async function burst(metering: Metering, keys: readonly string[], disrupt: () => Promise<void>) {
  let answered = 0;
  let failures = 0;
  const untilDone = async (key: string): Promise<ConsumeOutcome> => {
    for (;;) {
      try {
        const outcome = await metering.consume(request(key));
        answered++;
        return outcome;
      } catch {
        failures++;
        await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
      }
    }
  };
  const work = (async () => {
    const results: ConsumeOutcome[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < keys.length) {
          const key = keys[next++] ?? '';
          results.push(...(await Promise.all([untilDone(key), untilDone(key)])));
        }
      }),
    );
    return results;
  })();
  while (answered < keys.length) await new Promise((resolve) => setTimeout(resolve, 5));
  await disrupt();
  return { results: await work, failures };
}

/** Exactly one unit per key, whichever way each answer came back, and a fresh process replays them all. */
async function expectEachKeyCountedOnce(
  table: EntityTable,
  keys: readonly string[],
  results: ConsumeOutcome[],
) {
  expect(results).toHaveLength(keys.length * 2);
  for (const key of keys) {
    const answers = results.filter((o) => o.idempotencyKey === key);
    expect(answers.map((o) => o.kind)).toEqual(['consumed', 'consumed']);
  }
  const total = async () => {
    let sum = 0;
    for (const owner of OWNERS)
      sum += Number((await table.get(owner, usageRowKey('executions', period)))?.props.used);
    return sum;
  };
  expect(await total()).toBe(keys.length);
  const fresh = meteringOn(table);
  const replays = await Promise.all(keys.map((key) => fresh.consume(request(key))));
  expect(replays.every((o) => o.replayed)).toBe(true);
  expect(await total()).toBe(keys.length);
}

describe('metering when the storage fails mid-run', () => {
  const location = mkdtempSync(path.join(os.tmpdir(), 'metering-outage-'));
  let azurite: RunningAzurite | undefined;
  afterAll(async () => {
    await azurite?.stop();
    rmSync(location, { recursive: true, force: true });
  });

  it('loses no unit and counts none twice when Azurite is stopped and started again', async () => {
    const ports = { blob: await freePort(), queue: await freePort(), table: await freePort() };
    azurite = await startAzurite({ location, ports });
    const connection = { kind: 'connectionString', connectionString: azurite.connectionString } as const;
    // No retries inside the SDK: the callers retry, so every failure reaches them.
    const table = createAzureTable(connection, 'outagebilling', { maxRetries: 0 });
    const metering = meteringOn(table, { maxAttempts: 30 });
    const keys = Array.from({ length: 300 }, (_, i) => `run-${i}`);

    const { results, failures } = await burst(metering, keys, async () => {
      await azurite?.stop();
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { accountKey } = azurite ?? {};
      // Same ports, same data, same key: the clients' connection string stays good.
      azurite = await startAzurite({ location, ports, ...(accountKey === undefined ? {} : { accountKey }) });
    });
    expect(failures).toBeGreaterThan(0); // the outage really hit requests in flight
    await expectEachKeyCountedOnce(table, keys, results);
  });

  it('counts none twice when responses are lost after the storage committed (retries become replays)', async () => {
    const target = Number(/TableEndpoint=http:\/\/127\.0\.0\.1:(\d+)/.exec(inject('azuriteConnection'))?.[1]);
    const proxy = await responseDroppingProxy(target);
    try {
      const connectionString = inject('azuriteConnection').replace(
        /TableEndpoint=http:\/\/127\.0\.0\.1:\d+/,
        `TableEndpoint=http://127.0.0.1:${proxy.port}`,
      );
      const table = createAzureTable(
        { kind: 'connectionString', connectionString },
        `${uniquePrefix()}lost`,
        { maxRetries: 0 },
      );
      const metering = meteringOn(table, { maxAttempts: 30 });
      const keys = Array.from({ length: 300 }, (_, i) => `run-${i}`);
      const { results, failures } = await burst(metering, keys, async () => {
        // Drop transaction responses until a few commits have gone unanswered.
        proxy.dropResponses(true);
        const deadline = Date.now() + 5_000;
        while (proxy.droppedTransactions < 5 && Date.now() < deadline) {
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        proxy.dropResponses(false);
      });
      expect(proxy.droppedTransactions).toBeGreaterThanOrEqual(5);
      expect(failures).toBeGreaterThan(0);
      // Some consumptions committed without their caller hearing: their retries were answered as replays.
      const firstAnswers = results.filter((o) => !o.replayed).length;
      expect(firstAnswers).toBeLessThan(keys.length);
      await expectEachKeyCountedOnce(table, keys, results);
    } finally {
      await proxy.close();
    }
  });
});

/**
 * A TCP proxy in front of Azurite's table port that, while dropping, lets every request through but cuts
 * the connection as a transaction's response starts: the storage committed, the caller sees a network
 * error. Reads pass, so callers keep reaching the point of committing.
 */
async function responseDroppingProxy(targetPort: number) {
  let dropping = false;
  let droppedTransactions = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    /** Whether the request in flight on this connection is an entity-group transaction. */
    let transaction = false;
    client.on('data', (chunk: Buffer) => {
      const head = chunk.subarray(0, 120).toString('latin1');
      if (/^(GET|POST|PUT|PATCH|MERGE|DELETE|HEAD) /.test(head)) transaction = /^POST \S*\$batch/.test(head);
      upstream.write(chunk);
    });
    upstream.on('data', (chunk) => {
      if (dropping && transaction) {
        droppedTransactions++;
        transaction = false;
        client.destroy();
        upstream.destroy();
      } else client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    port: typeof address === 'object' && address ? address.port : 0,
    get droppedTransactions() {
      return droppedTransactions;
    },
    dropResponses(on: boolean) {
      dropping = on;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
