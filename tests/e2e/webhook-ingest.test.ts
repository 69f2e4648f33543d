import { QueueClient } from '@azure/storage-queue';
import Stripe from 'stripe';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { STRIPE_API_VERSION } from '../../src/adapters/stripe/gateway.js';
import { LOCAL_DEFAULTS } from '../../src/local/defaults.js';
import { type ApiResponse, startTestHost, type TestHost } from '../support/harness.js';

const secret = LOCAL_DEFAULTS.STRIPE_WEBHOOK_SECRET;

function event(type: string, object: Record<string, unknown>, overrides: Record<string, unknown> = {}) {
  return {
    id: `evt_${Math.random().toString(36).slice(2, 12)}`,
    object: 'event',
    api_version: STRIPE_API_VERSION,
    created: Math.floor(Date.now() / 1000),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
    ...overrides,
  };
}

const invoicePaid = () => event('invoice.paid', { id: 'in_test1', object: 'invoice', customer: 'cus_test1' });

describe('Stripe webhook ingest', () => {
  let host: TestHost;
  let queue: QueueClient;

  const deliver = (
    payload: string,
    signature?: string,
    headers: Record<string, string> = {},
  ): Promise<ApiResponse> =>
    host.call('POST', '/api/webhooks/stripe', {
      body: payload,
      headers: { ...(signature === undefined ? {} : { 'stripe-signature': signature }), ...headers },
    });
  const sign = (payload: string, timestamp = Math.floor(Date.now() / 1000), key: string = secret) =>
    Stripe.webhooks.generateTestHeaderString({ payload, secret: key, timestamp });
  const queued = async () => (await queue.getProperties()).approximateMessagesCount ?? 0;

  beforeAll(async () => {
    // No processor: what the endpoint enqueues stays visible in the queue.
    host = await startTestHost({ stripe: false, worker: false });
    queue = new QueueClient(inject('azuriteConnection'), host.services.config.queueName);
    await queue.createIfNotExists();
  });
  beforeEach(async () => {
    await queue.clearMessages();
  });
  afterAll(async () => {
    await host?.close();
  });

  it('verifies, enqueues with the event id, and answers 200', async () => {
    const body = JSON.stringify(invoicePaid(), null, 2);
    const response = await deliver(body, sign(body));
    expect(response.status, response.text).toBe(200);
    expect(response.body).toEqual({ received: true });
    const [message] = (await queue.peekMessages({ numberOfMessages: 1 })).peekedMessageItems;
    const decoded = JSON.parse(Buffer.from(message?.messageText ?? '', 'base64').toString('utf8')) as {
      id: string;
      orderingKey: string;
    };
    expect(decoded).toMatchObject({ id: JSON.parse(body).id, orderingKey: 'cus_test1' });
  });

  it('queues only the ids of a 200 KB event, so any event up to the body limit fits a queue message', async () => {
    const big = event('customer.subscription.updated', {
      id: 'sub_big1',
      object: 'subscription',
      customer: 'cus_big1',
      // Real events grow with items, discounts and metadata; the queue message must not.
      items: {
        object: 'list',
        data: Array.from({ length: 400 }, (_, i) => ({ id: `si_${i}`, pad: 'x'.repeat(480) })),
      },
    });
    const body = JSON.stringify(big);
    expect(body.length).toBeGreaterThan(200_000);
    const response = await deliver(body, sign(body));
    expect(response.status, response.text).toBe(200);
    const [message] = (await queue.peekMessages({ numberOfMessages: 1 })).peekedMessageItems;
    expect(message?.messageText.length ?? 0).toBeLessThan(1_000);
    const decoded = JSON.parse(Buffer.from(message?.messageText ?? '', 'base64').toString('utf8')) as unknown;
    expect(decoded).toEqual({
      id: big.id,
      orderingKey: 'cus_big1',
      body: {
        v: 2,
        eventId: big.id,
        type: 'customer.subscription.updated',
        objectId: 'sub_big1',
        customerId: 'cus_big1',
        attempt: 0,
        created: big.created,
      },
    });
  });

  it('acknowledges a checkout completed without a customer (a Payment Link) and queues nothing', async () => {
    const body = JSON.stringify(
      event('checkout.session.completed', { id: 'cs_guest1', object: 'checkout.session', customer: null }),
    );
    const response = await deliver(body, sign(body));
    expect(response.status, response.text).toBe(200);
    expect(response.body).toEqual({ received: true, ignored: true });
    expect(await queued()).toBe(0);
  });

  it.each([
    ['no signature', (body: string) => deliver(body), 'signature_missing'],
    [
      'a wrong secret',
      (body: string) => deliver(body, sign(body, undefined, 'whsec_wrong')),
      'signature_invalid',
    ],
    [
      'a tampered body',
      (body: string) => deliver(body.replace('in_test1', 'in_test2'), sign(body)),
      'signature_invalid',
    ],
    [
      'a timestamp older than the tolerance',
      (body: string) => deliver(body, sign(body, Math.floor(Date.now() / 1000) - 301)),
      'signature_timestamp_stale',
    ],
    ['a garbage header', (body: string) => deliver(body, 't=abc,v1=def'), 'signature_invalid'],
  ])('refuses %s with 400 and enqueues nothing', async (_name, send, code) => {
    const response = await send(JSON.stringify(invoicePaid()));
    expect(response.status, response.text).toBe(400);
    expect(response.headers.get('content-type')).toMatch(/problem\+json/);
    expect(response.body).toMatchObject({ code });
    expect(await queued()).toBe(0);
  });

  it('refuses a signed but malformed body, and a handled type with a body it cannot read', async () => {
    const malformed = '{"id": "evt_1", "type": ';
    expect((await deliver(malformed, sign(malformed))).body).toMatchObject({ code: 'malformed_json' });
    const bad = JSON.stringify(event('invoice.paid', { id: 'in_1', object: 'invoice' }));
    const response = await deliver(bad, sign(bad));
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ code: 'event_invalid' });
    expect(await queued()).toBe(0);
  });

  it('refuses an event of another API version, saying which one it expects', async () => {
    const old = JSON.stringify({ ...invoicePaid(), api_version: '2023-10-16' });
    const response = await deliver(old, sign(old));
    expect(response.status).toBe(400);
    expect(response.body).toMatchObject({ code: 'api_version_unexpected' });
    expect((response.body as { detail: string }).detail).toContain(STRIPE_API_VERSION);
    expect(await queued()).toBe(0);
  });

  it('refuses an oversized body with 413 before verifying it', async () => {
    const huge = JSON.stringify({ ...invoicePaid(), padding: 'x'.repeat(600_000) });
    const response = await deliver(huge, sign(huge));
    expect(response.status).toBe(413);
    expect(await queued()).toBe(0);
  });

  it('acknowledges event types it does not act on, and enqueues nothing', async () => {
    const body = JSON.stringify(event('customer.created', { id: 'cus_1', object: 'customer' }));
    const response = await deliver(body, sign(body));
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ received: true, ignored: true });
    // Some event objects have no id at all; they are acknowledged too, never refused into endless retries.
    const noId = JSON.stringify(event('balance.available', { object: 'balance', available: [] }));
    expect((await deliver(noId, sign(noId))).body).toEqual({ received: true, ignored: true });
    expect(await queued()).toBe(0);
  });
});
