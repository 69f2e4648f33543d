import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest';
import { createServiceBusQueue } from '../../src/adapters/queue/service-bus.js';
import { createStorageQueue } from '../../src/adapters/queue/storage-queue.js';
import { STRIPE_API_VERSION } from '../../src/adapters/stripe/gateway.js';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { QueueUnavailableError } from '../../src/billing/queue.js';
import { StoreError } from '../../src/billing/store.js';
import { connectionStringFor } from '../../src/local/azurite.js';
import { LOCAL_DEFAULTS } from '../../src/local/defaults.js';
import { type FreezableProxy, startFreezableProxy } from '../support/freezable-proxy.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

const TIMEOUT_MS = 400;
/** What a caller may wait beyond the deadline: scheduling, not another try of the SDK. */
const SLACK_MS = 1_500;

/** One part (`TableEndpoint`, `AccountKey`, …) of this run's Azurite connection string. */
function azuritePart(name: 'TableEndpoint' | 'QueueEndpoint' | 'AccountKey'): string {
  const value = inject('azuriteConnection')
    .split(';')
    .find((part) => part.startsWith(`${name}=`))
    ?.slice(name.length + 1);
  if (value === undefined) throw new Error(`no ${name} in the Azurite connection string`);
  return value;
}

/** The port of one service in this run's Azurite. */
const azuritePort = (endpoint: 'TableEndpoint' | 'QueueEndpoint') =>
  Number(new URL(azuritePart(endpoint)).port);

/** Every storage service of the account behind one proxy port (the key is this run's Azurite's). */
const connectionThrough = (proxy: FreezableProxy) =>
  connectionStringFor({ blob: proxy.port, queue: proxy.port, table: proxy.port }, azuritePart('AccountKey'));

/** How long `promise` takes to reject, and with what. */
async function failure(promise: Promise<unknown>): Promise<{ error: unknown; ms: number }> {
  const started = performance.now();
  try {
    await promise;
  } catch (error) {
    return { error, ms: performance.now() - started };
  }
  throw new Error('expected a failure');
}

const proxies: FreezableProxy[] = [];
const proxy = async (target?: number) => {
  const started = await startFreezableProxy(target);
  proxies.push(started);
  return started;
};
afterEach(async () => {
  await Promise.all(proxies.splice(0).map((p) => p.close()));
});

describe('storage calls on a service that stops answering', () => {
  it('fail as store_unavailable within the timeout, whatever the SDK would retry', async () => {
    const tableProxy = await proxy(azuritePort('TableEndpoint'));
    const table = createAzureTable(
      { kind: 'connectionString', connectionString: connectionThrough(tableProxy) },
      `t${randomBytes(6).toString('hex')}`,
      { timeoutMs: TIMEOUT_MS },
    );
    // Answered while the service is well: the table exists and a row is there.
    await table.upsert('p', 'r', { v: 1 });
    expect((await table.get('p', 'r'))?.props).toEqual({ v: 1 });

    tableProxy.freeze();
    const calls: ReadonlyArray<readonly [string, () => Promise<unknown>]> = [
      ['get', () => table.get('p', 'r')],
      ['upsert', () => table.upsert('p', 'r', { v: 2 })],
      ['list', () => table.list('p')],
      [
        'transact',
        () =>
          table.transact('p', [
            { kind: 'upsert', rowKey: 'a', props: { v: 1 } },
            { kind: 'upsert', rowKey: 'b', props: { v: 1 } },
          ]),
      ],
      ['ping', () => table.ping()],
    ];
    const results = await Promise.all(calls.map(([, call]) => failure(call())));
    results.forEach(({ error, ms }, i) => {
      const name = calls[i]?.[0];
      expect(error, name).toBeInstanceOf(StoreError);
      expect(error, name).toMatchObject({ code: 'store_unavailable' });
      expect(ms, name).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
      expect(ms, name).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    });
  });

  it('fail as store_unavailable within the timeout when the table cannot even be created', async () => {
    const frozen = await proxy();
    const table = createAzureTable(
      { kind: 'connectionString', connectionString: connectionThrough(frozen) },
      'never',
      { timeoutMs: TIMEOUT_MS },
    );
    const { error, ms } = await failure(table.get('p', 'r'));
    expect(error).toMatchObject({ code: 'store_unavailable' });
    expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });

  it('a storage queue send fails as queue_unavailable within the timeout', async () => {
    const queueProxy = await proxy(azuritePort('QueueEndpoint'));
    const queue = createStorageQueue(
      { kind: 'connectionString', connectionString: connectionThrough(queueProxy) },
      `q-${randomBytes(6).toString('hex')}`,
      { timeoutMs: TIMEOUT_MS },
    );
    await queue.send({ id: 'evt_1', body: {} });
    queueProxy.freeze();
    const { error, ms } = await failure(queue.send({ id: 'evt_2', body: {} }));
    expect(error).toBeInstanceOf(QueueUnavailableError);
    expect(error).toMatchObject({ code: 'queue_unavailable' });
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });

  it('a Service Bus send fails as queue_unavailable within the timeout', async () => {
    const frozen = await proxy();
    // The emulator form of the connection string: plain AMQP on our port, so the frozen server gets it.
    const connectionString = `Endpoint=sb://127.0.0.1:${frozen.port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;`;
    const queue = createServiceBusQueue({ kind: 'connectionString', connectionString }, 'billing-events', {
      timeoutMs: TIMEOUT_MS,
    });
    const { error, ms } = await failure(queue.send({ id: 'evt_1', body: {} }));
    expect(error).toBeInstanceOf(QueueUnavailableError);
    // Cut off by the deadline, not refused early for some other reason.
    expect(ms).toBeGreaterThanOrEqual(TIMEOUT_MS - 50);
    expect(ms).toBeLessThan(TIMEOUT_MS + SLACK_MS);
  });
});

describe('the HTTP API on frozen storage', () => {
  let host: TestHost | undefined;
  afterAll(async () => {
    await host?.close();
  });

  it('answers 503 with Retry-After within the timeout, for a read and for a webhook', async () => {
    const frozen = await startFreezableProxy();
    proxies.push(frozen);
    host = await startTestHost({
      stripe: false,
      worker: false,
      env: {
        BILLING_STORAGE_CONNECTION: connectionThrough(frozen),
        BILLING_STORAGE_TIMEOUT_MS: String(TIMEOUT_MS),
      },
    });

    let started = performance.now();
    const summary = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'user_frozen' }),
    });
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    expect(summary.status, summary.text).toBe(503);
    expect(summary.body).toMatchObject({ code: 'storage_unavailable' });
    expect(summary.headers.get('retry-after')).toBe('1');

    const payload = JSON.stringify({
      id: 'evt_frozen1',
      object: 'event',
      api_version: STRIPE_API_VERSION,
      created: Math.floor(Date.now() / 1000),
      livemode: false,
      pending_webhooks: 1,
      request: { id: null, idempotency_key: null },
      type: 'invoice.paid',
      data: { object: { id: 'in_frozen1', object: 'invoice', customer: 'cus_frozen1' } },
    });
    started = performance.now();
    const webhook = await host.call('POST', '/api/webhooks/stripe', {
      body: payload,
      headers: {
        'stripe-signature': Stripe.webhooks.generateTestHeaderString({
          payload,
          secret: LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET,
        }),
      },
    });
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + SLACK_MS);
    expect(webhook.status, webhook.text).toBe(503);
    expect(webhook.body).toMatchObject({ code: 'queue_unavailable' });
    expect(webhook.headers.get('retry-after')).toBe('5');
  });
});
