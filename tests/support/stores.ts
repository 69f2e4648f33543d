import { inject } from 'vitest';
import { createStorageQueue } from '../../src/adapters/queue/storage-queue.js';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import type { Clock } from '../../src/billing/clock.js';
import type { EventQueue } from '../../src/billing/queue.js';
import type { EntityTable } from '../../src/billing/store.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from './env.js';
import { uniquePrefix } from './harness.js';
import { isFeedRequest, isSeatSyncRequest, manualClock } from './memory.js';

/** The two tables the services use. */
export type Tables = { readonly directory: EntityTable; readonly billing: EntityTable };

export const memoryTables = (): Tables => ({
  directory: createMemoryTable('directory'),
  billing: createMemoryTable('billing'),
});

/** Fresh tables on this run's Azurite (a prefix no other call uses). */
export function azuriteTables(): Tables {
  const connection = { kind: 'connectionString', connectionString: inject('azuriteConnection') } as const;
  const prefix = uniquePrefix();
  return {
    directory: createAzureTable(connection, `${prefix}directory`),
    billing: createAzureTable(connection, `${prefix}billing`),
  };
}

/** Both kinds of storage, for `describe.each`. */
export const STORES = [
  ['memory', memoryTables],
  ['azurite', azuriteTables],
] as const;

/**
 * The real domain wiring over `tables`: one "process" (its own in-process lanes and caches). Two calls
 * over the same tables are two processes.
 */
export function servicesOver(
  tables: Tables,
  options: { readonly env?: Record<string, string>; readonly clock?: Clock } = {},
): Services {
  const config = loadConfig({
    BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
    ...baseTestEnv,
    ...options.env,
  });
  // The storage queue as configured, except that seat sync requests (one per new person) and entitlement
  // feed drains (one per change that moves entitlements) are dropped:
  // these tests run no processor, and a send to a queue that is not there retries for half a minute.
  const storageQueue = createStorageQueue(
    {
      kind: 'connectionString',
      connectionString:
        config.storage.kind === 'connectionString'
          ? config.storage.connectionString
          : 'UseDevelopmentStorage=true',
    },
    config.queueName,
  );
  const queue: EventQueue = {
    name: storageQueue.name,
    send: (message, sendOptions) =>
      isSeatSyncRequest(message.body) || isFeedRequest(message.body)
        ? Promise.resolve()
        : storageQueue.send(message, sendOptions),
    ping: () => storageQueue.ping(),
  };
  return createServices(config, { clock: options.clock ?? manualClock(), tables, queue });
}
