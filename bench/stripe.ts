/**
 * Webhook ingest (verify + enqueue, over HTTP) and processor throughput (queue -> Stripe re-read ->
 * transaction), each beside a raw baseline measured in the same run on the same Azurite:
 * - ingest vs a raw Storage Queue `sendMessage` of the same payload;
 * - processing vs a raw entity-group transaction (marker + state row) per event.
 * The local Stripe sandbox stands in for Stripe, so processor figures include its answers (in process).
 * A processing round that poisons an event fails the script. `--quick`: 10 owners, one round.
 */
import { randomBytes } from 'node:crypto';
import { QueueClient } from '@azure/storage-queue';
import Stripe from 'stripe';
import { STRIPE_API_VERSION } from '../src/adapters/stripe/gateway.js';
import { createAzureTable } from '../src/adapters/tables/azure-table.js';
import { catalog } from '../src/billing/catalog.js';
import { type EventRef, orderingKeyOf, refFromStripeEvent } from '../src/billing/event-ref.js';
import { createServices } from '../src/composition.js';
import { loadConfig } from '../src/config.js';
import { startAzurite } from '../src/local/azurite.js';
import { LOCAL_DEFAULTS } from '../src/local/defaults.js';
import { startQueueWorker } from '../src/local/queue-worker.js';
import { silenceFunctionsTestModeWarnings } from '../src/local/quiet.js';
import { startLocalHost } from '../src/local/server.js';
import { sandboxPrices } from '../src/local/stripe-seed.js';
import { type SandboxEvent, startStripeSandbox } from '../tools/stripe-sandbox/index.js';
import {
  BenchError,
  loadAverage,
  type Measured,
  measure,
  median,
  round2,
  runBench,
  sized,
  writeReport,
} from './measure.js';

silenceFunctionsTestModeWarnings();
const OWNERS = sized(40, 10);
const CONCURRENCY = 16;
const ROUNDS = sized(3, 1);

async function main(): Promise<void> {
  const { routes } = await import('../src/functions/routes.js');
  const azurite = await startAzurite();
  const sandbox = await startStripeSandbox({
    port: 0,
    webhookSecret: LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
    apiVersion: STRIPE_API_VERSION,
    prices: sandboxPrices(catalog),
    deliverWebhooks: false,
  });
  const env = (prefix: string) => ({
    ...LOCAL_DEFAULTS,
    BILLING_STORAGE_CONNECTION: azurite.connectionString,
    BILLING_TABLE_PREFIX: prefix,
    BILLING_QUEUE_NAME: `q-${prefix}`,
    STRIPE_API_BASE: sandbox.url,
  });
  const fresh = () => createServices(loadConfig(env(`b${randomBytes(4).toString('hex')}`)));
  try {
    // Seed: OWNERS customers, each with a paid Pro subscription; their events are the workload.
    const seed = fresh();
    const priceId = (await seed.pricing.refresh()).prices.get('pro_monthly')?.id ?? '';
    const owners: Array<[string, string]> = [];
    for (let i = 0; i < OWNERS; i++) {
      const ownerId = `bench-owner-${i}`;
      const customerId = await seed.customers.ensure(ownerId);
      const session = await seed.payments.createCheckoutSession({
        customerId,
        ownerId,
        mode: 'subscription',
        priceId,
        quantity: 1,
        successUrl: 'http://localhost/ok',
        cancelUrl: 'http://localhost/no',
        metadata: {},
        idempotencyKey: `bench-${i}`,
      });
      await fetch(`${sandbox.url}/checkout/${session.id}/pay`, {
        method: 'POST',
        headers: { accept: 'application/json' },
      });
      owners.push([ownerId, customerId]);
    }
    // Only what ingest queues is work for the processor: types we act on (others are acknowledged).
    const events: SandboxEvent[] = sandbox
      .events()
      .filter((e) => refFromStripeEvent(e, STRIPE_API_VERSION).kind === 'enqueue');
    const byCustomer = new Map<string, EventRef[]>();
    for (const e of events) {
      const decision = refFromStripeEvent(e, STRIPE_API_VERSION);
      if (decision.kind !== 'enqueue') continue;
      const key = orderingKeyOf(decision.ref);
      byCustomer.set(key, [...(byCustomer.get(key) ?? []), decision.ref]);
    }
    // Queued as they would arrive from many customers at once: interleaved, each customer's in order. (The
    // sandbox lists them customer by customer; queued so, a batch would hold two or three customers, whose
    // events the processor must apply one at a time, and measure that rather than the processor.)
    const lanes = [...byCustomer.values()];
    const refs: EventRef[] = [];
    for (let i = 0; refs.length < events.length; i++) {
      for (const lane of lanes) {
        const ref = lane[i];
        if (ref) refs.push(ref);
      }
    }
    console.log(`Seeded ${OWNERS} subscriptions: ${events.length} events of types we act on`);
    const payloads = events.map((e) => JSON.stringify(e, null, 2));
    const sign = (payload: string) =>
      Stripe.webhooks.generateTestHeaderString({
        payload,
        secret: LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
        timestamp: Math.floor(Date.now() / 1000),
      });
    const results: Measured[] = [];

    // Ingest: HTTP POST to the webhook endpoint vs a raw sendMessage.
    const ingestServices = fresh();
    const host = await startLocalHost({ services: ingestServices, routes, port: 0, log: () => undefined });
    const rawQueue = new QueueClient(azurite.connectionString, `raw-${randomBytes(4).toString('hex')}`);
    await rawQueue.createIfNotExists();
    await ingestServices.queue.ping();
    const count = payloads.length * 4;
    results.push(
      await measure(
        'baseline: queue sendMessage',
        'raw Storage Queue send of one event',
        count,
        CONCURRENCY,
        ROUNDS,
        async (i) => {
          await rawQueue.sendMessage(Buffer.from(payloads[i % payloads.length] ?? '').toString('base64'));
        },
      ),
    );
    results.push(
      await measure(
        'ingest: webhook verify + enqueue',
        'signed POST /api/webhooks/stripe',
        count,
        CONCURRENCY,
        ROUNDS,
        async (i) => {
          const payload = payloads[i % payloads.length] ?? '';
          const response = await fetch(`${host.url}/api/webhooks/stripe`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', 'stripe-signature': sign(payload) },
            body: payload,
          });
          if (response.status !== 200)
            throw new BenchError('scenario_failed', `ingest: ${response.status} ${await response.text()}`);
        },
      ),
    );
    await host.close();
    await rawQueue.deleteIfExists();
    await new QueueClient(azurite.connectionString, ingestServices.config.queueName).deleteIfExists();

    // Processing: each round on fresh tables, so every event is new work (not a duplicate).
    const rawTable = createAzureTable(
      { kind: 'connectionString', connectionString: azurite.connectionString },
      `raw${randomBytes(4).toString('hex')}`,
    );
    let rawRound = 0;
    results.push(
      await measure(
        'baseline: marker + state transaction',
        'one entity-group transaction per event',
        events.length,
        CONCURRENCY,
        ROUNDS,
        async (i) => {
          const owner = owners[i % owners.length]?.[0] ?? '';
          await rawTable.transact(`${owner}-${rawRound}-${i}`, [
            { kind: 'create', rowKey: `event|${events[i]?.id}`, props: { at: new Date().toISOString() } },
            { kind: 'upsert', rowKey: 'subscription', props: { plan: 'pro', status: 'active' } },
          ]);
        },
        () => {
          rawRound++;
        },
      ),
    );
    const processRounds: number[] = [];
    const processLoads: Array<readonly number[]> = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const loadAverageBefore = loadAverage();
      const services = fresh();
      for (const [ownerId, customerId] of owners) {
        await services.tables.billing.upsert(`customer:${customerId}`, 'ref', { ownerId });
      }
      const queue = new QueueClient(azurite.connectionString, services.config.queueName);
      await queue.createIfNotExists();
      // A fresh queue per round (fresh() names one), holding exactly what ingest would have queued.
      // One at a time, so the queue holds them in the order above.
      for (const ref of refs) {
        await services.queue.send({ id: ref.eventId, orderingKey: orderingKeyOf(ref), body: ref });
      }
      const started = performance.now();
      const worker = await startQueueWorker({
        services,
        connectionString: azurite.connectionString,
        pollMs: 5,
        log: () => undefined,
      });
      await worker.drained();
      const elapsed = (performance.now() - started) / 1000;
      await worker.stop();
      await queue.deleteIfExists();
      // A poisoned event is a failed scenario, not a fast one: the figure would count work never done.
      const poisoned = worker.poisoned();
      if (poisoned.length > 0)
        throw new BenchError(
          'wrong_result',
          `processing round ${round}: ${poisoned.length} of ${events.length} events poisoned (${poisoned.slice(0, 5).join(', ')})`,
        );
      if (round > 0) {
        processRounds.push(Math.round(events.length / elapsed));
        processLoads.push(loadAverageBefore);
      }
    }
    const processed = median(processRounds);
    console.log(
      `${'processor: queue -> Stripe -> table'.padEnd(38)} ${String(processed).padStart(6)} events/s (rounds ${processRounds.join(', ')})`,
    );
    const baseline = results.find((r) => r.name.startsWith('baseline: marker'));

    writeReport('stripe', {
      parameters: { owners: OWNERS, events: events.length, concurrency: CONCURRENCY, rounds: ROUNDS },
      results,
      processor: {
        name: 'processor: queue -> Stripe re-read -> transaction',
        description: 'local queue worker, 16 messages per receive, over the sandbox',
        eventsPerSecond: processed,
        rounds: processRounds,
        loadAverageBeforeRounds: processLoads,
        vsBaseline: baseline ? { throughputRatio: round2(processed / baseline.opsPerSecond) } : null,
      },
    });
  } finally {
    await sandbox.stop();
    await azurite.stop();
  }
}

runBench(main);
