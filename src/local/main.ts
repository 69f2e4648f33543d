import type { LogHandler } from '@azure/functions';
import { type StripeSandbox, startStripeSandbox } from '../../tools/stripe-sandbox/index.js';
import { STRIPE_API_VERSION } from '../adapters/stripe/gateway.js';
import { catalog } from '../billing/catalog.js';
import { createServices } from '../composition.js';
import { ConfigError, loadConfig } from '../config.js';
import { startTelemetry, stopTelemetry } from '../telemetry/start.js';
import { type RunningAzurite, startAzurite } from './azurite.js';
import { LOCAL_DEFAULTS, withLocalDefaults } from './defaults.js';
import { type QueueWorker, startQueueWorker } from './queue-worker.js';
import { silenceFunctionsTestModeWarnings } from './quiet.js';
import { startLocalHost } from './server.js';
import { sandboxPrices } from './stripe-seed.js';
import { startTimers } from './timers.js';

silenceFunctionsTestModeWarnings();
const { routes } = await import('../functions/routes.js');
const { refreshPricing } = await import('../functions/pricing-refresh.js');
const { rollUsageOver } = await import('../functions/usage-rollover.js');
const { migrateOwners } = await import('../functions/owner-migration.js');
const { reconcileStripe } = await import('../functions/stripe-reconcile.js');
const { pruneRetention } = await import('../functions/retention-prune.js');
const { syncSeats } = await import('../functions/seat-sync.js');
const { invoiceContracts } = await import('../functions/contract-invoicing.js');
const { sweepEntitlementFeed } = await import('../functions/entitlement-feed-sweep.js');

const log: LogHandler = (level, ...args) => {
  if (level === 'trace' || level === 'debug') return;
  const line = args.map((a) => (a instanceof Error ? (a.stack ?? a.message) : String(a))).join(' ');
  (level === 'error' || level === 'critical' ? console.error : console.log)(`[${level}] ${line}`);
};

/**
 * `npm start`: Azurite, the local Stripe sandbox, the HTTP routes, the queue processor and the timers,
 * all on embedded defaults. Each piece is skipped when real settings point elsewhere.
 */
async function main(): Promise<void> {
  const env = withLocalDefaults(process.env);
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  };

  try {
    let azurite: RunningAzurite | undefined;
    if (!env.BILLING_STORAGE_CONNECTION) {
      const location = env.AZURITE_LOCATION ?? LOCAL_DEFAULTS.AZURITE_LOCATION;
      console.log(`Starting Azurite (data in ${location}) ...`);
      azurite = await startAzurite({
        location,
        ports: {
          blob: Number(env.AZURITE_BLOB_PORT),
          queue: Number(env.AZURITE_QUEUE_PORT),
          table: Number(env.AZURITE_TABLE_PORT),
        },
      });
      stops.push(() => azurite?.stop() ?? Promise.resolve());
      env.BILLING_STORAGE_CONNECTION = azurite.connectionString;
    }

    // The sandbox stands in for Stripe unless a real Stripe (or another sandbox) is configured.
    let sandbox: StripeSandbox | undefined;
    if (!env.STRIPE_API_BASE && env.STRIPE_SECRET_KEY === LOCAL_DEFAULTS.STRIPE_SECRET_KEY) {
      sandbox = await startStripeSandbox({
        port: Number(env.STRIPE_SANDBOX_PORT ?? LOCAL_DEFAULTS.STRIPE_SANDBOX_PORT),
        webhookSecret: env.STRIPE_WEBHOOK_SECRET ?? LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
        apiVersion: STRIPE_API_VERSION,
        prices: sandboxPrices(catalog),
      });
      stops.push(() => sandbox?.stop() ?? Promise.resolve());
      env.STRIPE_API_BASE = sandbox.url;
    }

    const config = loadConfig(env);
    await startTelemetry(config.telemetry);
    stops.push(stopTelemetry);
    const services = createServices(config);
    const host = await startLocalHost({ services, routes, port: Number(env.LOCAL_PORT ?? 7071), log });
    stops.push(() => host.close());
    sandbox?.setWebhookUrl(`${host.url}/api/webhooks/stripe`);

    let worker: QueueWorker | undefined;
    if (config.queueTransport.kind === 'storage' && config.storage.kind === 'connectionString') {
      worker = await startQueueWorker({ services, connectionString: config.storage.connectionString, log });
      stops.push(() => worker?.stop() ?? Promise.resolve());
    }

    const timers = startTimers(
      services,
      [
        { name: 'ownerMigration', everyMs: 10 * 60 * 1000, run: migrateOwners },
        { name: 'pricingRefresh', everyMs: 60 * 60 * 1000, run: refreshPricing },
        { name: 'usageRollover', everyMs: 60 * 60 * 1000, run: rollUsageOver },
        { name: 'retentionPrune', everyMs: 60 * 60 * 1000, run: pruneRetention },
        {
          name: 'stripeReconcile',
          everyMs: config.reconcile.localIntervalSeconds * 1000,
          run: reconcileStripe,
        },
        { name: 'seatSync', everyMs: config.seatSync.localIntervalSeconds * 1000, run: syncSeats },
        { name: 'contractInvoicing', everyMs: 60 * 60 * 1000, run: invoiceContracts },
        {
          name: 'entitlementFeedSweep',
          everyMs: config.feed.localSweepIntervalSeconds * 1000,
          run: sweepEntitlementFeed,
        },
      ],
      log,
    );
    stops.push(async () => timers.stop());

    console.log(`
Billing backend running at ${host.url}/api
  health:   curl ${host.url}/api/health
  a token:  npm run token -- --sub user_1 [--org org_1] [--role service]
  then:     curl -H "Authorization: Bearer <token>" ${host.url}/api/billing/summary${
    sandbox
      ? `\n  Stripe:   local sandbox at ${sandbox.url} (webhooks -> ${host.url}/api/webhooks/stripe)`
      : ''
  }${worker ? `\n  queue:    processing ${config.queueName} on Azurite` : ''}
  feed:     entitlements.changed to ${
    config.feed.transport.kind === 'storage'
      ? `queue ${config.feed.transport.queueName}`
      : `topic ${config.feed.transport.topic}`
  }; webhook ${config.feed.webhook ? config.feed.webhook.url.href : 'off (ENTITLEMENT_WEBHOOK_URL)'}${
    config.telemetry
      ? '\n  telemetry: OpenTelemetry to Azure Monitor (APPLICATIONINSIGHTS_CONNECTION_STRING)'
      : ''
  }
Ctrl-C stops everything.`);
  } catch (error) {
    await stopAll();
    throw error;
  }

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping ...`);
    await stopAll();
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}

main().catch((error: unknown) => {
  console.error(error instanceof ConfigError ? error.message : error);
  process.exit(1);
});
