import { DefaultAzureCredential } from '@azure/identity';
import { createStorageQueue } from './adapters/queue/storage-queue.js';
import { createAzureTable } from './adapters/tables/azure-table.js';
import { type Catalog, catalog as defaultCatalog } from './billing/catalog.js';
import { type Clock, systemClock } from './billing/clock.js';
import { createDirectory, type Directory } from './billing/directory.js';
import { createEntitlements, type Entitlements } from './billing/entitlements.js';
import type { EventQueue } from './billing/queue.js';
import type { EntityTable } from './billing/store.js';
import { createSubscriptions, type Subscriptions } from './billing/subscription.js';
import { createSummaries, type Summaries } from './billing/summary.js';
import { createUsageReader } from './billing/usage.js';
import { type Config, loadConfig } from './config.js';
import { type Authenticator, createAuthenticator } from './http/auth.js';

/** Everything a function needs, wired once from configuration. No globals beyond the one lazy root below. */
export interface Services {
  readonly config: Config;
  readonly catalog: Catalog;
  readonly clock: Clock;
  readonly tables: { readonly directory: EntityTable; readonly billing: EntityTable };
  readonly queue: EventQueue;
  readonly authenticate: Authenticator;
  readonly directory: Directory;
  readonly subscriptions: Subscriptions;
  readonly entitlements: Entitlements;
  readonly summaries: Summaries;
}

export interface ServiceOverrides {
  readonly clock?: Clock;
  readonly tables?: Services['tables'];
  readonly queue?: EventQueue;
}

/** The composition root: adapters wired into the domain. Tests pass overrides (a clock, in-memory tables). */
export function createServices(config: Config, overrides: ServiceOverrides = {}): Services {
  const clock = overrides.clock ?? systemClock;
  const { storage } = config;
  // Managed identity in Azure; a connection string for Azurite (and for accounts that use keys).
  const credential = storage.kind === 'managedIdentity' ? new DefaultAzureCredential() : undefined;
  const connectionFor = (service: 'table' | 'queue') =>
    storage.kind === 'connectionString'
      ? ({ kind: 'connectionString', connectionString: storage.connectionString } as const)
      : ({
          kind: 'endpoint',
          endpoint: service === 'table' ? storage.tableEndpoint : storage.queueEndpoint,
          credential: credential ?? new DefaultAzureCredential(),
        } as const);
  const tableConnection = connectionFor('table');
  const queueConnection = connectionFor('queue');

  const tables = overrides.tables ?? {
    directory: createAzureTable(tableConnection, `${config.tablePrefix}directory`),
    billing: createAzureTable(tableConnection, `${config.tablePrefix}billing`),
  };
  const queue = overrides.queue ?? createStorageQueue(queueConnection, config.queueName);
  const catalog = defaultCatalog;
  const directory = createDirectory({ table: tables.directory, clock });
  const subscriptions = createSubscriptions(tables.billing);
  const usage = createUsageReader(tables.billing);
  const entitlements = createEntitlements({
    catalog,
    directory,
    subscriptions,
    usage,
    enforcement: config.enforcement,
    billingTable: tables.billing,
    clock,
  });
  const summaries = createSummaries({ catalog, directory, entitlements, usage });
  return {
    config,
    catalog,
    clock,
    tables,
    queue,
    authenticate: createAuthenticator(config.auth),
    directory,
    subscriptions,
    entitlements,
    summaries,
  };
}

let root: Services | undefined;

/**
 * The services of this process, built from the environment on first use. Azure Functions loads each
 * function file separately; they all share this one instance.
 */
export function servicesFromEnvironment(): Services {
  root ??= createServices(loadConfig());
  return root;
}
