import { DefaultAzureCredential } from '@azure/identity';
import { createServiceBusQueue } from './adapters/queue/service-bus.js';
import { createStorageQueue } from './adapters/queue/storage-queue.js';
import { createStripeClient, createStripeGateway, STRIPE_API_VERSION } from './adapters/stripe/gateway.js';
import { createWebhookVerifier, type WebhookVerifier } from './adapters/stripe/webhooks.js';
import { createAzureTable } from './adapters/tables/azure-table.js';
import type { RevertHandler } from './billing/audit/entry.js';
import { withAuditIndex } from './billing/audit/index-writer.js';
import { type AuditLog, createAuditLog } from './billing/audit/query.js';
import { type AuditReverter, createAuditReverter, createRevertRegistry } from './billing/audit/revert.js';
import { type BillingActions, createBillingActions } from './billing/billing-actions.js';
import { type Catalog, CREDIT_PACKS, catalog as defaultCatalog } from './billing/catalog.js';
import { type ChangePreviews, createChangePreviews } from './billing/change-preview.js';
import { type Clock, systemClock } from './billing/clock.js';
import { type ContractInvoicing, createContractInvoicing } from './billing/contracts/invoicing.js';
import { type Contracts, contractRevertHandler, createContracts } from './billing/contracts/service.js';
import { createCreditPurchases } from './billing/credit-purchases.js';
import { type Credits, createCredits } from './billing/credits.js';
import { type Customers, createCustomers } from './billing/customers.js';
import { createDirectory, type Directory } from './billing/directory/index.js';
import { createOrgOwnerCache } from './billing/directory/org-owners.js';
import { createEntitlements, type Entitlements } from './billing/entitlements.js';
import { type ChangesPage, listChanges } from './billing/feed/changes.js';
import { createFeedDrain, drainRequester, type FeedDrain } from './billing/feed/drain.js';
import { withEntitlementOutbox } from './billing/feed/outbox.js';
import { createFeedWebhooks, type FeedWebhooks } from './billing/feed/webhook.js';
import { createSubscriptionSync, type SubscriptionSync } from './billing/lifecycle.js';
import { createLocks, type Locks } from './billing/locks.js';
import { createMetering, type Metering } from './billing/metering.js';
import { createOwnerLanes } from './billing/metering-lanes.js';
import { type CohortSettings, createCohortSettings } from './billing/ops/cohorts.js';
import { createMonitorReports, type MonitorReports, withMonitorIndex } from './billing/ops/monitor.js';
import { createOverrides, type Overrides } from './billing/ops/overrides.js';
import { createOwnerEnforcement, type OwnerEnforcementSettings } from './billing/ops/owner-enforcement.js';
import { createLegacyMigration, type LegacyMigration } from './billing/owner/legacy-migration.js';
import { createOwnerAccess, type OwnerAccess } from './billing/owner/owner-access.js';
import { createOwnerStore } from './billing/owner/snapshot.js';
import type { PaymentsGateway } from './billing/payments.js';
import { createPoisonStore, type PoisonStore } from './billing/poison.js';
import { catalogLookupKeys, createPricing, type Pricing } from './billing/pricing.js';
import type { EventQueue } from './billing/queue.js';
import { createReconciler, type Reconciler } from './billing/reconcile.js';
import { withRetentionIndex } from './billing/retention/index-writer.js';
import { createRetention, type Retention } from './billing/retention/prune.js';
import { createRollover, type Rollover } from './billing/rollover.js';
import { createSeatCaps, type SeatCaps } from './billing/seat-cap.js';
import { createSeatSync, type SeatSync } from './billing/seat-sync.js';
import { requestSeatSync } from './billing/seat-sync-message.js';
import type { EntityTable } from './billing/store.js';
import { createEventProcessor, type EventProcessor } from './billing/stripe-events.js';
import { createSummaries, type Summaries } from './billing/summary.js';
import { createUsageService, type UsageService } from './billing/usage-service.js';
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
  /** Owner snapshots: everything a decision needs about one billing owner, in one read. */
  readonly owners: OwnerAccess;
  /** Brings owners from the first storage layout over (lazily, and by the `ownerMigration` timer). */
  readonly migration: LegacyMigration;
  readonly entitlements: Entitlements;
  readonly summaries: Summaries;
  readonly payments: PaymentsGateway;
  readonly customers: Customers;
  readonly pricing: Pricing;
  readonly sync: SubscriptionSync;
  readonly metering: Metering;
  readonly credits: Credits;
  readonly rollover: Rollover;
  /** Prunes old idempotency markers and ledger rows (`retentionPrune` timer). */
  readonly retention: Retention;
  readonly locks: Locks;
  readonly usage: UsageService;
  readonly events: EventProcessor;
  /** Finds and repairs drift from Stripe (`stripeReconcile` timer, `POST /api/ops/reconcile`). */
  readonly reconciler: Reconciler;
  /** Events the processor gave up on, for an admin to list and replay. */
  readonly poison: PoisonStore;
  readonly actions: BillingActions;
  /** What a plan change or cancellation would do, from the same plan, changing nothing. */
  readonly previews: ChangePreviews;
  /** Every billing change's audit row, by owner and across owners. */
  readonly audit: AuditLog;
  /** Undoes admin changes through the registered `RevertHandler`s. */
  readonly reverter: AuditReverter;
  /** The billing owner's cap on billable seats. */
  readonly seatCaps: SeatCaps;
  /** Enterprise contracts set by operators (`/api/ops/owners/{id}/contract`). */
  readonly contracts: Contracts;
  /** Their Stripe invoices: issued per period (`contractInvoicing` timer), paid or not (invoice events). */
  readonly contractInvoicing: ContractInvoicing;
  /** Undoes an audited contract change, for the revert endpoint. */
  readonly contractRevert: RevertHandler;
  /** Per-seat subscriptions follow membership (queued `seat_sync` messages, the `seatSync` timer). */
  readonly seatSync: SeatSync;
  /** Enforcement cohorts (a global ops setting), and the enforcement policy in force (cached briefly). */
  readonly cohorts: CohortSettings;
  /** Per-owner overrides of limits and flags (ops). */
  readonly overrides: Overrides;
  /** Per-owner enforcement modes (ops). */
  readonly ownerEnforcement: OwnerEnforcementSettings;
  /** Would-be denials across owners, from the day index (ops). */
  readonly monitor: MonitorReports;
  readonly webhooks: WebhookVerifier;
  /** The API version webhooks must carry. */
  readonly stripeApiVersion: string;
  /** The entitlement change feed: outbox drain, webhook deliveries, catch-up reads. */
  readonly feed: {
    readonly drain: FeedDrain;
    /** `undefined` unless `ENTITLEMENT_WEBHOOK_URL` is set. */
    readonly webhooks: FeedWebhooks | undefined;
    /** Where events are published (a Storage Queue or a Service Bus topic). */
    readonly transport: EventQueue;
    changes(ownerId: string, since: number, limit: number): Promise<ChangesPage>;
  };
}

export interface ServiceOverrides {
  readonly clock?: Clock;
  readonly tables?: Services['tables'];
  readonly queue?: EventQueue;
  readonly payments?: PaymentsGateway;
  /** Where the entitlement feed publishes (tests read it). */
  readonly feedTransport?: EventQueue;
  /** `false` leaves the outbox out: only for the bench's baseline of what the outbox costs. @default true */
  readonly outbox?: boolean;
  /** Revert handlers beside the modules' own (a kind may be registered once), e.g. a test's. */
  readonly revertHandlers?: readonly RevertHandler[];
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

  const storedTables = overrides.tables ?? {
    directory: createAzureTable(tableConnection, `${config.tablePrefix}directory`, {
      timeoutMs: config.storageTimeoutMs,
    }),
    billing: createAzureTable(tableConnection, `${config.tablePrefix}billing`, {
      timeoutMs: config.storageTimeoutMs,
    }),
  };
  const transport = config.queueTransport;
  const queue =
    overrides.queue ??
    (transport.kind === 'storage'
      ? createStorageQueue(queueConnection, config.queueName, { timeoutMs: config.storageTimeoutMs })
      : createServiceBusQueue(
          transport.kind === 'serviceBus'
            ? { kind: 'connectionString', connectionString: transport.connectionString }
            : {
                kind: 'namespace',
                fullyQualifiedNamespace: transport.fullyQualifiedNamespace,
                credential: credential ?? new DefaultAzureCredential(),
              },
          config.queueName,
          { timeoutMs: config.storageTimeoutMs },
        ));
  const catalog = defaultCatalog;
  // Every writer of markers and ledger rows lists their owner for the retention job (see index-writer.ts),
  // and every writer of a would-be denial lists its owner for the monitor report (ops/monitor.ts).
  // Every audit row is projected into the cross-owner day index around its transaction (audit/index-writer.ts).
  const indexed = withAuditIndex(
    withMonitorIndex(
      withRetentionIndex(storedTables.billing, { clock, retentionDays: config.retention.days }),
    ),
    { clock },
  );
  // Every change that moves an owner's entitlements writes its `entitlements.changed` outbox row in its
  // own transaction, and asks for the drain once committed (src/billing/feed/outbox.ts).
  const tables = {
    ...storedTables,
    billing:
      overrides.outbox === false
        ? indexed
        : withEntitlementOutbox(indexed, {
            catalog,
            clock,
            committed: drainRequester(queue, (message, error) => console.warn(message, error)),
          }),
  };
  const feedSettings = config.feed;
  const feedTransport =
    overrides.feedTransport ??
    (feedSettings.transport.kind === 'storage'
      ? createStorageQueue(queueConnection, feedSettings.transport.queueName, {
          timeoutMs: config.storageTimeoutMs,
        })
      : createServiceBusQueue(
          feedSettings.transport.kind === 'serviceBus'
            ? { kind: 'connectionString', connectionString: feedSettings.transport.connectionString }
            : {
                kind: 'namespace',
                fullyQualifiedNamespace: feedSettings.transport.fullyQualifiedNamespace,
                credential: credential ?? new DefaultAzureCredential(),
              },
          // A sender takes a topic's name as it takes a queue's.
          feedSettings.transport.topic,
          { timeoutMs: config.storageTimeoutMs },
        ));
  const feedWebhooks = feedSettings.webhook
    ? createFeedWebhooks({
        table: tables.billing,
        queue,
        clock,
        settings: {
          url: feedSettings.webhook.url,
          secret: feedSettings.webhook.secret,
          maxAttempts: feedSettings.webhook.maxAttempts,
          retry: {
            baseSeconds: feedSettings.webhook.retry.baseSeconds,
            maxSeconds: feedSettings.webhook.retry.maxSeconds,
          },
        },
      })
    : undefined;
  // The enforcement policy in force: configuration plus the cohort rules, read through a short cache.
  const cohorts = createCohortSettings({ table: tables.billing, base: config.enforcement, clock });
  const migration = createLegacyMigration({
    billingTable: tables.billing,
    directoryTable: tables.directory,
    catalog,
    clock,
  });
  const owners = createOwnerAccess({
    store: createOwnerStore({ table: tables.billing, clock, migration }),
    table: tables.billing,
    catalog,
  });
  const directory = createDirectory({
    indexTable: tables.directory,
    ownerTable: tables.billing,
    owners,
    orgOwners: createOrgOwnerCache(),
    catalog,
    enforcement: cohorts,
    clock,
    // Queued, delayed a few seconds so a burst coalesces. Not awaited: a queue that is slow or down (its
    // client retries for half a minute) must not hold a member PUT; a request lost that way is repaired
    // by the hourly seatSync timer.
    seatsChanged: async (ownerId) => {
      requestSeatSync(
        queue,
        { ownerId, trigger: 'membership', attempt: 0 },
        config.seatSync.delaySeconds,
      ).catch((error: unknown) =>
        console.warn(`seat sync of ${ownerId} not queued (the seatSync timer will repair it)`, error),
      );
    },
  });
  // One lane per owner in this process, shared by consumption and credit grants.
  const lanes = createOwnerLanes();
  const metering = createMetering({ table: tables.billing, owners, clock, lanes });
  const credits = createCredits({ table: tables.billing, owners, clock, lanes });
  const rollover = createRollover({
    table: tables.billing,
    clock,
    // Until every owner is in the snapshot layout, reading the owner brings it over first.
    beforeOwner: async (ownerId) => {
      if (!(await migration.complete())) await owners.read(ownerId);
    },
  });
  const retention = createRetention({
    table: tables.billing,
    clock,
    options: { retentionDays: config.retention.days },
  });
  const locks = createLocks({ owners, table: tables.billing, catalog, clock });
  const entitlements = createEntitlements({
    catalog,
    directory,
    owners,
    enforcement: cohorts,
    billingTable: tables.billing,
    clock,
  });
  const summaries = createSummaries({ catalog, owners, locks });
  const payments =
    overrides.payments ??
    createStripeGateway(
      createStripeClient({
        secretKey: config.stripe.secretKey,
        apiBase: config.stripe.apiBase,
        maxNetworkRetries: config.stripe.maxNetworkRetries,
      }),
    );
  const customers = createCustomers({ table: tables.billing, payments, clock });
  const pricing = createPricing({
    table: tables.billing,
    payments,
    lookupKeys: [...catalogLookupKeys(catalog), ...CREDIT_PACKS.map((pack) => pack.lookupKey)],
    clock,
  });
  const sync = createSubscriptionSync({
    table: tables.billing,
    owners,
    customers,
    payments,
    catalog,
    dunning: config.dunning,
    clock,
  });
  // One instance: the processor and the reconciler grant through the same path (once per session).
  const purchases = createCreditPurchases({
    table: tables.billing,
    owners,
    payments,
    customers,
    pricing,
    packs: CREDIT_PACKS,
    clock,
  });
  const contracts = createContracts({ table: tables.billing, owners, catalog, clock });
  const contractRevert = contractRevertHandler(contracts);
  const ownerOverrides = createOverrides({ table: tables.billing, owners, catalog, now: () => clock.now() });
  const ownerEnforcement = createOwnerEnforcement({ table: tables.billing, owners, now: () => clock.now() });
  const contractInvoicing = createContractInvoicing({
    table: tables.billing,
    owners,
    customers,
    payments,
    catalog,
    clock,
  });
  const events = createEventProcessor({ sync, payments, purchases, contracts: contractInvoicing });
  const reconciler = createReconciler({
    table: tables.billing,
    payments,
    customers,
    sync,
    purchases,
    clock,
    options: {
      maxItems: config.reconcile.maxItems,
      overlapSeconds: config.reconcile.overlapSeconds,
      lookbackHours: config.reconcile.lookbackHours,
    },
  });
  const actions = createBillingActions({
    catalog,
    customers,
    payments,
    pricing,
    sync,
    directory,
    billingTable: tables.billing,
    owners,
    clock,
    urls: config.urls,
  });
  const previews = createChangePreviews({
    catalog,
    actions,
    owners,
    locks,
    payments,
    table: tables.billing,
  });
  return {
    config,
    catalog,
    clock,
    tables,
    queue,
    authenticate: createAuthenticator(config.auth),
    directory,
    owners,
    migration,
    entitlements,
    summaries,
    payments,
    customers,
    pricing,
    sync,
    events,
    reconciler,
    poison: createPoisonStore({ table: tables.billing, queue, clock }),
    actions,
    previews,
    contracts,
    contractInvoicing,
    contractRevert,
    seatCaps: createSeatCaps({ table: tables.billing, owners, now: () => clock.now() }),
    seatSync: createSeatSync({
      table: tables.billing,
      owners,
      payments,
      catalog,
      clock,
      options: {
        maxUpdatesPerHour: config.seatSync.maxUpdatesPerHour,
        leaseSeconds: config.seatSync.leaseSeconds,
      },
      later: (ownerId, delaySeconds) =>
        requestSeatSync(queue, { ownerId, trigger: 'deferred', attempt: 0 }, delaySeconds),
    }),
    webhooks: createWebhookVerifier({
      secret: config.stripe.webhookSecret,
      toleranceSeconds: config.stripe.webhookToleranceSeconds,
      // Wall time, not the business clock: Stripe signs deliveries when it sends them, even for
      // subscriptions on a test clock, so freshness is judged against the real time.
      clock: systemClock,
    }),
    stripeApiVersion: STRIPE_API_VERSION,
    feed: {
      drain: createFeedDrain({
        table: tables.billing,
        transport: feedTransport,
        queue,
        webhook: feedWebhooks !== undefined,
        clock,
      }),
      webhooks: feedWebhooks,
      transport: feedTransport,
      changes: (ownerId, since, limit) => listChanges(tables.billing, ownerId, since, limit),
    },
    audit: createAuditLog({ table: tables.billing, clock }),
    reverter: createAuditReverter({
      table: tables.billing,
      // Each kind of admin change is undone by the module that makes it.
      registry: createRevertRegistry([
        ownerOverrides.revertHandler,
        ownerEnforcement.revertHandler,
        cohorts.revertHandler,
        contractRevert,
        ...(overrides.revertHandlers ?? []),
      ]),
      clock,
    }),
    metering,
    credits,
    rollover,
    retention,
    locks,
    usage: createUsageService({ catalog, directory, metering, enforcement: cohorts }),
    cohorts,
    overrides: ownerOverrides,
    ownerEnforcement,
    monitor: createMonitorReports({ table: tables.billing, clock }),
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
