import { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { createServices } from '../../src/composition.js';
import { connectionStringFor } from '../../src/local/azurite.js';
import { type QueueWorker, startQueueWorker } from '../../src/local/queue-worker.js';
import { testConfig } from '../support/harness.js';

/** Azurite's well-known development account, at a port where nothing listens. */
const DEAD_STORAGE = {
  kind: 'connectionString',
  // The same account string the local host uses, with every endpoint on port 9 (discard).
  connectionString: connectionStringFor({ blob: 9, queue: 9, table: 9 }),
} as const;

/**
 * The local queue worker survives storage failing under it: the processor cannot record (its tables are
 * unreachable), so it throws; after the last delivery the worker's own poison move fails too (its poison
 * queue was deleted under it, a real 404 from Azurite). Nothing may reject the loop; once the poison queue
 * is back, the message gets there on its next delivery.
 */
describe('local queue worker under storage failures', () => {
  const logs: string[] = [];
  let worker: QueueWorker;
  let queue: QueueClient;
  let poison: QueueClient;

  beforeAll(async () => {
    const config = testConfig({ STRIPE_MAX_NETWORK_RETRIES: '0' });
    const services = createServices(config, {
      tables: {
        directory: createAzureTable(DEAD_STORAGE, 'directory', { maxRetries: 0 }),
        billing: createAzureTable(DEAD_STORAGE, 'billing', { maxRetries: 0 }),
      },
    });
    worker = await startQueueWorker({
      services,
      connectionString: inject('azuriteConnection'),
      visibilityTimeoutSeconds: 1,
      pollMs: 50,
      log: (level, ...args) => logs.push(`[${level}] ${args.map(String).join(' ')}`),
    });
    queue = new QueueClient(inject('azuriteConnection'), config.queueName);
    poison = new QueueClient(inject('azuriteConnection'), `${config.queueName}-poison`);
  });
  afterAll(async () => {
    await worker?.stop();
    await queue?.deleteIfExists();
    await poison?.deleteIfExists();
  });

  it('logs a failed poison move with the Stripe event id and keeps running', async () => {
    await poison.delete();
    const ref = {
      v: 2,
      eventId: 'evt_worker1',
      type: 'invoice.paid',
      objectId: 'in_1',
      customerId: 'cus_1',
      // The last attempt (BILLING_EVENT_MAX_ATTEMPTS is 5 in the test settings): Stripe is unreachable, so
      // the processor poisons it, which fails with the tables, so it throws.
      attempt: 4,
    };
    const text = JSON.stringify({ id: ref.eventId, orderingKey: 'cus_1', body: ref });
    await queue.sendMessage(Buffer.from(text, 'utf8').toString('base64'));

    // Three deliveries (BILLING_QUEUE_MAX_DELIVERIES in the test settings) a second apart, then the move fails.
    await expect
      .poll(() => logs.some((l) => l.includes('event evt_worker1 could not be moved')), {
        timeout: 20_000,
        interval: 200,
      })
      .toBe(true);
    expect(worker.poisoned()).toEqual([]);

    // Still running: with the poison queue back, the next delivery moves it there.
    await poison.create();
    await expect.poll(() => worker.poisoned().length, { timeout: 20_000, interval: 200 }).toBe(1);
    expect(logs.some((l) => /event evt_worker1 moved to .*-poison after \d+ deliveries/.test(l))).toBe(true);
    const [moved] = (await poison.peekMessages()).peekedMessageItems;
    expect(Buffer.from(moved?.messageText ?? '', 'base64').toString('utf8')).toBe(text);
    expect(logs.some((l) => l.includes('poisoned (exhausted, payments_unavailable)'))).toBe(false);
    await worker.drained();
  });
});
