import http from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  decodeForm,
  FormDecodeError,
  type SandboxPriceSeed,
  type StripeSandbox,
  startStripeSandbox,
} from '../../tools/stripe-sandbox/index.js';

/**
 * The sandbox is driven by the real `stripe` SDK, and its webhooks are verified by the SDK's own
 * `constructEvent` on a small receiver: if the sandbox drifts from Stripe's wire format, these fail.
 */

const SECRET = 'whsec_sandbox_test_secret';
const API_VERSION = Stripe.API_VERSION;
const START = new Date('2026-01-15T12:00:00Z');
const DAY = 86_400;
const seconds = (date: Date) => Math.floor(date.getTime() / 1000);

const PRICES: SandboxPriceSeed[] = [
  {
    lookupKey: 'pro_monthly',
    productName: 'Pro',
    productMetadata: { plan: 'pro' },
    unitAmount: 2_000,
    currency: 'usd',
    recurring: { interval: 'month' },
  },
  {
    lookupKey: 'pro_yearly',
    productName: 'Pro',
    productMetadata: { plan: 'pro' },
    unitAmount: 20_000,
    currency: 'usd',
    recurring: { interval: 'year' },
  },
  {
    lookupKey: 'team_monthly',
    productName: 'Team',
    productMetadata: { plan: 'team' },
    unitAmount: 5_000,
    currency: 'usd',
    recurring: { interval: 'month' },
  },
  {
    lookupKey: 'credits_pack',
    productName: 'Credits',
    productMetadata: { kind: 'credits' },
    unitAmount: 1_000,
    currency: 'usd',
    recurring: null,
  },
];

interface Received {
  readonly event: Stripe.Event;
  readonly attempt: number;
}

/** A webhook endpoint that verifies every delivery with the SDK, and can be told to fail. */
async function startReceiver() {
  const received: Received[] = [];
  const attemptsByEvent = new Map<string, number>();
  let respond: (eventId: string, attempt: number) => number = () => 200;
  const verifier = new Stripe('sk_test_receiver', { apiVersion: API_VERSION });
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      let event: Stripe.Event;
      try {
        event = verifier.webhooks.constructEvent(raw, req.headers['stripe-signature'] ?? '', SECRET);
      } catch (error) {
        res.writeHead(400).end(error instanceof Error ? error.message : 'invalid');
        return;
      }
      const attempt = (attemptsByEvent.get(event.id) ?? 0) + 1;
      attemptsByEvent.set(event.id, attempt);
      const status = respond(event.id, attempt);
      if (status >= 200 && status < 300) received.push({ event, attempt });
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/webhooks`,
    received,
    types: () => received.map((r) => r.event.type),
    respondWith(fn: (eventId: string, attempt: number) => number) {
      respond = fn;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

type Receiver = Awaited<ReturnType<typeof startReceiver>>;

interface World {
  readonly sandbox: StripeSandbox;
  readonly receiver: Receiver;
  readonly stripe: Stripe;
  /** POSTs JSON to a sandbox path (hosted pages and control API). */
  post(path: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  priceId(lookupKey: string): Promise<string>;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function client(sandbox: StripeSandbox, options: { maxNetworkRetries?: number } = {}): Stripe {
  const url = new URL(sandbox.url);
  return new Stripe('sk_test_sandbox', {
    host: url.hostname,
    port: Number(url.port),
    protocol: 'http',
    apiVersion: API_VERSION,
    ...options,
  });
}

/** A fresh sandbox per test: clock advances must not renew another test's subscriptions. */
async function world(options: { retry?: { attempts: number; baseDelayMs: number } } = {}): Promise<World> {
  const receiver = await startReceiver();
  const sandbox = await startStripeSandbox({
    port: 0,
    webhookSecret: SECRET,
    apiVersion: API_VERSION,
    prices: PRICES,
    startTime: START,
    webhookUrl: receiver.url,
    webhookRetry: options.retry ?? { attempts: 3, baseDelayMs: 5 },
  });
  cleanups.push(receiver.close, sandbox.stop);
  const stripe = client(sandbox);
  const priceIds = new Map<string, string>();
  return {
    sandbox,
    receiver,
    stripe,
    async post(path, body) {
      const response = await fetch(`${sandbox.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      return { status: response.status, body: (await response.json()) as unknown };
    },
    async priceId(lookupKey) {
      if (priceIds.size === 0) {
        const prices = await stripe.prices.list({ lookup_keys: PRICES.map((p) => p.lookupKey), limit: 10 });
        for (const p of prices.data) if (p.lookup_key) priceIds.set(p.lookup_key, p.id);
      }
      const id = priceIds.get(lookupKey);
      if (!id) throw new Error(`no price ${lookupKey}`);
      return id;
    },
  };
}

const paidSession = z.object({
  session: z.object({
    id: z.string(),
    status: z.string(),
    payment_status: z.string(),
    subscription: z.string().nullable(),
    payment_intent: z.string().nullable(),
    customer: z.string(),
  }),
});

/** Customer, subscription checkout for `lookupKey`, paid through the hosted page's JSON variant. */
async function subscribe(w: World, lookupKey = 'pro_monthly', quantity = 1) {
  const customer = await w.stripe.customers.create({
    email: 'a@example.com',
    metadata: { ownerId: 'owner-1' },
  });
  const session = await w.stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: customer.id,
    line_items: [{ price: await w.priceId(lookupKey), quantity }],
    success_url: 'http://localhost/ok?session={CHECKOUT_SESSION_ID}',
    cancel_url: 'http://localhost/cancel',
    client_reference_id: 'owner-1',
    metadata: { ownerId: 'owner-1' },
    subscription_data: { metadata: { ownerId: 'owner-1' } },
  });
  const paid = await w.post(`/checkout/${session.id}/pay`);
  expect(paid.status).toBe(200);
  const subscriptionId = paidSession.parse(paid.body).session.subscription;
  if (!subscriptionId) throw new Error('no subscription');
  await w.sandbox.idle();
  return { customer, session, subscriptionId };
}

function eventsOf(w: World, after: number) {
  return w.sandbox.events().slice(after);
}

describe('form decoding', () => {
  it.each<[string, string, unknown]>([
    ['flat pairs', 'email=a%40b.c&name=A+B', { email: 'a@b.c', name: 'A B' }],
    [
      'nested hashes',
      'metadata[ownerId]=o1&metadata[plan]=pro',
      { metadata: { ownerId: 'o1', plan: 'pro' } },
    ],
    [
      'indexed arrays of hashes, as the SDK sends them',
      'line_items[0][price]=p1&line_items[0][quantity]=2&line_items[1][price]=p2',
      { line_items: [{ price: 'p1', quantity: '2' }, { price: 'p2' }] },
    ],
    [
      'appended arrays, as curl users write them',
      'expand[]=data.product&expand[]=data.x',
      { expand: ['data.product', 'data.x'] },
    ],
    ['indexes in index order, gaps closed', 'a[2]=c&a[0]=a&a[1]=b&b[5]=x', { a: ['a', 'b', 'c'], b: ['x'] }],
    [
      'unencoded and encoded brackets alike',
      'expand%5B0%5D=latest_invoice&expand[1]=schedule',
      { expand: ['latest_invoice', 'schedule'] },
    ],
    [
      'empty values (Stripe’s "unset")',
      'pause_collection=&metadata[k]=',
      { pause_collection: '', metadata: { k: '' } },
    ],
    [
      'deep nesting',
      'phases[0][items][0][price]=p&phases[0][duration][interval]=month',
      { phases: [{ items: [{ price: 'p' }], duration: { interval: 'month' } }] },
    ],
    ['the last of a repeated scalar', 'a=1&a=2', { a: '2' }],
    [
      'named keys that look numeric only in part',
      'metadata[1a]=x&metadata[2]=y',
      { metadata: { '1a': 'x', '2': 'y' } },
    ],
    ['an empty input', '', {}],
  ])('decodes %s', (_name, input, expected) => {
    expect(decodeForm(input)).toEqual(expected);
  });

  it.each([
    ['a scalar that is also a hash', 'a=1&a[b]=2'],
    ['a hash that is also a scalar', 'a[b]=2&a=1'],
    ['a prototype key', '__proto__[x]=1'],
    ['a nested prototype key', 'metadata[constructor]=1'],
    ['a malformed escape', 'a=%E0%A4%A'],
    ['an unclosed bracket', 'a[b=1'],
    ['named keys mixed with appends', 'a[b]=1&a[]=2'],
  ])('refuses %s', (_name, input) => {
    expect(() => decodeForm(input)).toThrow(FormDecodeError);
  });
});

describe('Stripe sandbox, driven by the stripe SDK', () => {
  it('requires a test secret key, answering like Stripe', async () => {
    const w = await world();
    const url = new URL(w.sandbox.url);
    // A live-mode key's shape, built at run time so that nothing live-looking sits in the source.
    const wrong = new Stripe(['sk', 'live', 'nope'].join('_'), {
      host: url.hostname,
      port: Number(url.port),
      protocol: 'http',
      apiVersion: API_VERSION,
    });
    await expect(wrong.customers.create({})).rejects.toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
    const bare = await fetch(`${w.sandbox.url}/v1/customers/cus_x`);
    expect(bare.status).toBe(401);
    expect(await bare.json()).toMatchObject({ error: { type: 'invalid_request_error' } });
  });

  it('creates one customer for concurrent requests sharing an idempotency key', async () => {
    const w = await world();
    const create = () =>
      w.stripe.customers.create({ metadata: { ownerId: 'o-1' } }, { idempotencyKey: 'customer:o-1' });
    const [a, b] = await Promise.all([create(), create()]);
    expect(a.id).toMatch(/^cus_/);
    expect(b.id).toBe(a.id);
    expect(b.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(w.sandbox.events().filter((e) => e.type === 'customer.created')).toHaveLength(1);
    const fetched = await w.stripe.customers.retrieve(a.id);
    expect(fetched).toMatchObject({
      id: a.id,
      object: 'customer',
      livemode: false,
      metadata: { ownerId: 'o-1' },
    });

    const reused = w.stripe.customers.create(
      { metadata: { ownerId: 'o-2' } },
      { idempotencyKey: 'customer:o-1' },
    );
    await expect(reused).rejects.toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
  });

  it('lists prices by lookup key with their products expanded', async () => {
    const w = await world();
    const list = await w.stripe.prices.list({
      lookup_keys: ['pro_monthly', 'team_monthly', 'credits_pack'],
      active: true,
      expand: ['data.product'],
    });
    expect(list).toMatchObject({ object: 'list', has_more: false, url: '/v1/prices' });
    const byKey = new Map(list.data.map((p) => [p.lookup_key, p]));
    const pro = byKey.get('pro_monthly');
    expect(pro).toMatchObject({
      object: 'price',
      type: 'recurring',
      unit_amount: 2_000,
      currency: 'usd',
      active: true,
      recurring: { interval: 'month', interval_count: 1, usage_type: 'licensed' },
      product: { object: 'product', name: 'Pro', metadata: { plan: 'pro' } },
    });
    expect(pro?.id).toMatch(/^price_/);
    expect(byKey.get('credits_pack')).toMatchObject({ type: 'one_time', recurring: null });
    expect(list.data).toHaveLength(3);

    const recurring = await w.stripe.prices.list({ type: 'recurring', limit: 2 });
    expect(recurring.data).toHaveLength(2);
    expect(recurring.has_more).toBe(true);
    const next = await w.stripe.prices.list({
      type: 'recurring',
      limit: 2,
      starting_after: recurring.data[1]?.id ?? '',
    });
    expect(next.data).toHaveLength(1);

    await expect(w.stripe.prices.list({ expand: ['product'] })).rejects.toThrow(
      /cannot be expanded \(product\)/,
    );
  });

  it('completes a subscription checkout and delivers its events, signed and in order', async () => {
    const w = await world();
    const before = w.sandbox.events().length;
    const { customer, session, subscriptionId } = await subscribe(w, 'pro_monthly', 2);
    expect(session).toMatchObject({
      object: 'checkout.session',
      status: 'open',
      payment_status: 'unpaid',
      mode: 'subscription',
      customer: customer.id,
      subscription: null,
      amount_total: 4_000,
      currency: 'usd',
      url: `${w.sandbox.url}/checkout/${session.id}`,
      client_reference_id: 'owner-1',
    });
    expect(session.id).toMatch(/^cs_test_/);
    expect(session.expires_at - session.created).toBe(DAY);

    const expected = [
      'customer.created',
      'customer.subscription.created',
      'invoice.created',
      'invoice.finalized',
      'invoice.paid',
      'invoice.payment_succeeded',
      'checkout.session.completed',
    ];
    expect(eventsOf(w, before).map((e) => e.type)).toEqual(expected);
    expect(w.receiver.types()).toEqual(expected);
    expect(w.sandbox.deliveries().every((d) => d.status === 'delivered' && d.attempts === 1)).toBe(true);
    const first = w.receiver.received[1]?.event;
    expect(first).toMatchObject({
      object: 'event',
      api_version: API_VERSION,
      livemode: false,
      pending_webhooks: 1,
    });
    expect(first?.created).toBe(seconds(START));

    const completed = await w.stripe.checkout.sessions.retrieve(session.id);
    expect(completed).toMatchObject({
      status: 'complete',
      payment_status: 'paid',
      subscription: subscriptionId,
    });

    const sub = await w.stripe.subscriptions.retrieve(subscriptionId, {
      expand: ['items.data.price.product', 'latest_invoice'],
    });
    const item = sub.items.data[0];
    expect(sub).toMatchObject({
      object: 'subscription',
      status: 'active',
      customer: customer.id,
      metadata: { ownerId: 'owner-1' },
    });
    expect(item).toMatchObject({
      quantity: 2,
      current_period_start: seconds(START),
      current_period_end: seconds(new Date('2026-02-15T12:00:00Z')),
      price: { lookup_key: 'pro_monthly', product: { name: 'Pro' } },
    });
    const invoice = sub.latest_invoice;
    if (invoice === null || typeof invoice === 'string') throw new Error('latest_invoice not expanded');
    expect(invoice).toMatchObject({
      status: 'paid',
      billing_reason: 'subscription_create',
      amount_due: 4_000,
      amount_paid: 4_000,
      amount_remaining: 0,
      attempt_count: 1,
      parent: {
        type: 'subscription_details',
        subscription_details: { subscription: subscriptionId, metadata: { ownerId: 'owner-1' } },
      },
    });
    expect(invoice.number).toMatch(/^[0-9A-F]{8}-0001$/);
    expect(invoice.lines.data[0]?.pricing?.price_details?.price).toBe(item?.price.id);
    // The SDK decodes decimal strings; the wire carries them as strings.
    expect(String(invoice.lines.data[0]?.pricing?.unit_amount_decimal)).toBe('2000');

    const again = await w.post(`/checkout/${session.id}/pay`);
    expect(again.status).toBe(400);
    const listed = await w.stripe.subscriptions.list({
      customer: customer.id,
      status: 'all',
      expand: ['data.latest_invoice'],
    });
    expect(listed.data.map((s) => s.id)).toEqual([subscriptionId]);
    const events = await w.stripe.events.list({ type: 'invoice.*', limit: 3 });
    expect(events.data.map((e) => e.type)).toEqual([
      'invoice.payment_succeeded',
      'invoice.paid',
      'invoice.finalized',
    ]);
  });

  it('serves the hosted pages and redirects to the success URL', async () => {
    const w = await world();
    const customer = await w.stripe.customers.create({ email: 'page@example.com' });
    const session = await w.stripe.checkout.sessions.create({
      mode: 'subscription',
      customer: customer.id,
      line_items: [{ price: await w.priceId('team_monthly'), quantity: 1 }],
      success_url: 'http://localhost/ok?session={CHECKOUT_SESSION_ID}',
    });
    const pageHtml = await (await fetch(session.url ?? '')).text();
    expect(pageHtml).toContain('Team');
    expect(pageHtml).toContain(`/checkout/${session.id}/pay`);
    const paid = await fetch(`${w.sandbox.url}/checkout/${session.id}/pay`, {
      method: 'POST',
      redirect: 'manual',
    });
    expect(paid.status).toBe(303);
    expect(paid.headers.get('location')).toBe(`http://localhost/ok?session=${session.id}`);
    const portal = await w.stripe.billingPortal.sessions.create({
      customer: customer.id,
      return_url: 'http://localhost/account',
    });
    expect(portal).toMatchObject({
      object: 'billing_portal.session',
      customer: customer.id,
      url: `${w.sandbox.url}/portal/${portal.id}`,
    });
    expect(portal.id).toMatch(/^bps_/);
    const portalHtml = await (await fetch(portal.url)).text();
    expect(portalHtml).toContain('http://localhost/account');
    expect(portalHtml).toContain('active');
  });

  it('upgrades at once with always_invoice: a prorated invoice, paid, and the events', async () => {
    const w = await world();
    const { subscriptionId } = await subscribe(w, 'pro_monthly');
    await w.post('/_sandbox/clock/advance', { seconds: 10 * DAY });
    const sub = await w.stripe.subscriptions.retrieve(subscriptionId);
    const item = sub.items.data[0];
    if (!item) throw new Error('no item');
    const before = w.sandbox.events().length;
    const updated = await w.stripe.subscriptions.update(
      subscriptionId,
      {
        items: [{ id: item.id, price: await w.priceId('team_monthly'), quantity: 3 }],
        proration_behavior: 'always_invoice',
      },
      { idempotencyKey: 'upgrade-1' },
    );
    expect(updated.items.data[0]).toMatchObject({
      id: item.id,
      quantity: 3,
      price: { lookup_key: 'team_monthly' },
    });
    const types = eventsOf(w, before).map((e) => e.type);
    expect(types).toEqual([
      'customer.subscription.updated',
      'invoice.created',
      'invoice.finalized',
      'invoice.paid',
      'invoice.payment_succeeded',
    ]);
    const updatedEvent = eventsOf(w, before)[0];
    expect(Object.keys(updatedEvent?.data.previous_attributes ?? {})).toEqual(
      expect.arrayContaining(['items', 'latest_invoice']),
    );
    expect(updatedEvent?.request).toEqual({
      id: expect.stringMatching(/^req_/),
      idempotency_key: 'upgrade-1',
    });

    const invoice = await w.stripe.invoices.retrieve(String(updated.latest_invoice));
    const period = item.current_period_end - item.current_period_start;
    const fraction = (item.current_period_end - (seconds(START) + 10 * DAY)) / period;
    const expected = Math.round(15_000 * fraction) - Math.round(2_000 * fraction);
    expect(invoice).toMatchObject({
      billing_reason: 'subscription_update',
      status: 'paid',
      amount_paid: expected,
    });
    expect(invoice.lines.data.map((l) => l.amount)).toEqual([
      -Math.round(2_000 * fraction),
      Math.round(15_000 * fraction),
    ]);
    await w.sandbox.idle();
    expect(w.receiver.types().slice(-5)).toEqual(types);
  });

  it('previews an item change with create_preview: the invoice the update then makes, nothing changed', async () => {
    const w = await world();
    const { subscriptionId } = await subscribe(w, 'pro_monthly');
    await w.post('/_sandbox/clock/advance', { seconds: 10 * DAY });
    const sub = await w.stripe.subscriptions.retrieve(subscriptionId);
    const item = sub.items.data[0];
    if (!item) throw new Error('no item');
    const change = {
      items: [{ id: item.id, price: await w.priceId('team_monthly'), quantity: 3 }],
      proration_behavior: 'always_invoice' as const,
    };
    const eventsBefore = w.sandbox.events().length;
    const preview = await w.stripe.invoices.createPreview({
      customer: String(sub.customer),
      subscription: subscriptionId,
      subscription_details: change,
    });
    expect(preview).toMatchObject({ object: 'invoice', billing_reason: 'upcoming', status: 'draft' });
    expect(preview.id).toMatch(/^upcoming_in_/);
    // Nothing changed: no event, no invoice, the same subscription.
    expect(w.sandbox.events()).toHaveLength(eventsBefore);
    expect((await w.stripe.invoices.list({ customer: String(sub.customer) })).data).toHaveLength(1);
    expect(await w.stripe.subscriptions.retrieve(subscriptionId)).toEqual(sub);
    await expect(w.stripe.invoices.retrieve(preview.id ?? '')).rejects.toMatchObject({ statusCode: 404 });

    const updated = await w.stripe.subscriptions.update(subscriptionId, change);
    const invoice = await w.stripe.invoices.retrieve(String(updated.latest_invoice));
    expect(invoice.amount_paid).toBe(preview.amount_due);
    expect(invoice.lines.data.map((l) => [l.amount, l.description])).toEqual(
      preview.lines.data.map((l) => [l.amount, l.description]),
    );

    // An interval change restarts the period: the preview bills it in full, as the update does.
    const yearly = await w.stripe.invoices.createPreview({
      subscription: subscriptionId,
      subscription_details: {
        items: [{ id: item.id, price: await w.priceId('pro_yearly'), quantity: 1 }],
        proration_behavior: 'always_invoice',
      },
    });
    expect(yearly.lines.data.some((l) => l.amount === 20_000)).toBe(true);
    // Only what is invoiced at once is previewed; a renewal preview is not modelled.
    await expect(
      w.stripe.invoices.createPreview({
        subscription: subscriptionId,
        subscription_details: { items: [{ id: item.id, quantity: 4 }], proration_behavior: 'none' },
      }),
    ).rejects.toMatchObject({ statusCode: 400, param: 'subscription_details[proration_behavior]' });
  });

  it('downgrades through a schedule at the next period, then releases the schedule', async () => {
    const w = await world();
    const { subscriptionId } = await subscribe(w, 'team_monthly', 3);
    const sub = await w.stripe.subscriptions.retrieve(subscriptionId);
    const item = sub.items.data[0];
    if (!item) throw new Error('no item');
    const schedule = await w.stripe.subscriptionSchedules.create({ from_subscription: subscriptionId });
    expect(schedule).toMatchObject({
      object: 'subscription_schedule',
      subscription: subscriptionId,
      status: 'active',
      end_behavior: 'release',
      phases: [
        {
          start_date: item.current_period_start,
          end_date: item.current_period_end,
          items: [{ price: item.price.id, quantity: 3 }],
        },
      ],
    });
    expect(schedule.id).toMatch(/^sub_sched_/);
    const pro = await w.priceId('pro_monthly');
    await w.stripe.subscriptionSchedules.update(schedule.id, {
      end_behavior: 'release',
      phases: [
        {
          items: [{ price: item.price.id, quantity: 3 }],
          start_date: item.current_period_start,
          end_date: item.current_period_end,
          proration_behavior: 'none',
        },
        {
          items: [{ price: pro, quantity: 1 }],
          duration: { interval: 'month', interval_count: 1 },
          proration_behavior: 'none',
        },
      ],
    });
    await expect(
      w.stripe.subscriptions.update(subscriptionId, { cancel_at_period_end: true }),
    ).rejects.toThrow(/managed by the subscription schedule/);
    const unchanged = await w.stripe.subscriptions.retrieve(subscriptionId, { expand: ['schedule'] });
    expect(unchanged.items.data[0]?.price.id).toBe(item.price.id);
    expect(unchanged.schedule).toMatchObject({ id: schedule.id, phases: [{}, { items: [{ price: pro }] }] });

    const before = w.sandbox.events().length;
    await w.post('/_sandbox/clock/advance', {
      to: new Date((item.current_period_end + 60) * 1000).toISOString(),
    });
    const renewed = await w.stripe.subscriptions.retrieve(subscriptionId, { expand: ['latest_invoice'] });
    expect(renewed.items.data[0]).toMatchObject({
      price: { id: pro },
      quantity: 1,
      current_period_start: item.current_period_end,
    });
    expect(renewed.schedule).toBe(schedule.id);
    const invoice = renewed.latest_invoice;
    if (invoice === null || typeof invoice === 'string') throw new Error('latest_invoice not expanded');
    expect(invoice).toMatchObject({
      billing_reason: 'subscription_cycle',
      amount_paid: 2_000,
      status: 'paid',
    });
    const types = eventsOf(w, before).map((e) => e.type);
    expect(types).toEqual([
      'invoice.created',
      'invoice.finalized',
      'invoice.paid',
      'invoice.payment_succeeded',
      'customer.subscription.updated',
      'subscription_schedule.updated',
    ]);
    const update = eventsOf(w, before)[4];
    expect(update?.data.previous_attributes).toHaveProperty('items');
    expect(update?.created).toBe(item.current_period_end);

    await w.post('/_sandbox/clock/advance', { seconds: 31 * DAY });
    const released = await w.stripe.subscriptionSchedules.retrieve(schedule.id);
    expect(released).toMatchObject({
      status: 'released',
      released_subscription: subscriptionId,
      subscription: null,
    });
    const after = await w.stripe.subscriptions.retrieve(subscriptionId);
    expect(after).toMatchObject({ schedule: null, status: 'active' });
    expect(after.items.data[0]?.price.id).toBe(pro);
  });

  it('cancels at period end: deleted after the clock passes it', async () => {
    const w = await world();
    const { subscriptionId } = await subscribe(w);
    const updated = await w.stripe.subscriptions.update(subscriptionId, { cancel_at_period_end: true });
    const end = updated.items.data[0]?.current_period_end ?? 0;
    expect(updated).toMatchObject({ cancel_at_period_end: true, cancel_at: end, status: 'active' });
    const before = w.sandbox.events().length;
    await w.post('/_sandbox/clock/advance', { seconds: 40 * DAY });
    expect(eventsOf(w, before).map((e) => e.type)).toEqual(['customer.subscription.deleted']);
    const canceled = await w.stripe.subscriptions.retrieve(subscriptionId);
    expect(canceled).toMatchObject({ status: 'canceled', ended_at: end });
    expect(w.sandbox.now().getTime()).toBe(START.getTime() + 40 * DAY * 1000);
    const active = await w.stripe.subscriptions.list({ customer: String(canceled.customer) });
    expect(active.data).toHaveLength(0);
  });

  it('cancels now with DELETE', async () => {
    const w = await world();
    const { subscriptionId } = await subscribe(w);
    const canceled = await w.stripe.subscriptions.cancel(subscriptionId);
    expect(canceled).toMatchObject({
      status: 'canceled',
      canceled_at: seconds(START),
      ended_at: seconds(START),
    });
    expect(w.sandbox.events().at(-1)?.type).toBe('customer.subscription.deleted');
  });

  it('fails a renewal into past_due, then recovers on retry with a working card', async () => {
    const w = await world();
    const { customer, subscriptionId } = await subscribe(w);
    expect((await w.post(`/_sandbox/customers/${customer.id}/payment_method`, { fails: true })).status).toBe(
      200,
    );
    const before = w.sandbox.events().length;
    await w.post('/_sandbox/clock/advance', { seconds: 32 * DAY });
    expect(eventsOf(w, before).map((e) => e.type)).toEqual([
      'invoice.created',
      'invoice.finalized',
      'invoice.payment_failed',
      'customer.subscription.updated',
    ]);
    const pastDue = await w.stripe.subscriptions.retrieve(subscriptionId, { expand: ['latest_invoice'] });
    expect(pastDue.status).toBe('past_due');
    const invoice = pastDue.latest_invoice;
    if (invoice === null || typeof invoice === 'string') throw new Error('latest_invoice not expanded');
    expect(invoice).toMatchObject({
      status: 'open',
      attempt_count: 1,
      attempted: true,
      amount_remaining: 2_000,
    });
    expect(invoice.next_payment_attempt).toBeGreaterThan(seconds(w.sandbox.now()) - 2 * DAY);
    const open = await w.stripe.invoices.list({ customer: customer.id, status: 'open' });
    expect(open.data.map((i) => i.id)).toEqual([invoice.id]);

    const stillFailing = await w.post(`/_sandbox/invoices/${invoice.id}/retry`);
    expect(stillFailing.body).toMatchObject({ status: 'open', attempt_count: 2 });
    await w.post(`/_sandbox/customers/${customer.id}/payment_method`, { fails: false });
    const mid = w.sandbox.events().length;
    const retried = await w.post(`/_sandbox/invoices/${invoice.id}/retry`);
    expect(retried.body).toMatchObject({ status: 'paid', attempt_count: 3 });
    expect(eventsOf(w, mid).map((e) => e.type)).toEqual([
      'invoice.paid',
      'invoice.payment_succeeded',
      'customer.subscription.updated',
    ]);
    expect(eventsOf(w, mid)[2]?.data.previous_attributes).toEqual({ status: 'past_due' });
    expect((await w.stripe.subscriptions.retrieve(subscriptionId)).status).toBe('active');
  });

  it('sends an invoice (send_invoice): open until paid, overdue once its due date passes, with the events', async () => {
    const w = await world();
    const customer = await w.stripe.customers.create({ email: 'ent@example.com' });
    const before = w.sandbox.events().length;
    const draft = await w.stripe.invoices.create({
      customer: customer.id,
      collection_method: 'send_invoice',
      days_until_due: 30,
      currency: 'usd',
      auto_advance: false,
      pending_invoice_items_behavior: 'exclude',
      metadata: { contract_id: 'ct_1' },
    });
    expect(draft).toMatchObject({
      status: 'draft',
      total: 0,
      collection_method: 'send_invoice',
      due_date: null,
    });
    await w.stripe.invoiceItems.create({
      customer: customer.id,
      invoice: draft.id,
      amount: 9_900,
      currency: 'usd',
    });
    const open = await w.stripe.invoices.finalizeInvoice(draft.id, { auto_advance: true });
    expect(open).toMatchObject({
      status: 'open',
      amount_due: 9_900,
      attempt_count: 0,
      due_date: seconds(START) + 30 * DAY,
      metadata: { contract_id: 'ct_1' },
      parent: null,
    });
    expect(open.lines.data[0]?.parent?.type).toBe('invoice_item_details');
    // Nothing collects it by itself: the renewal clock passes, it stays open, and turns overdue once.
    await w.post('/_sandbox/clock/advance', { seconds: 29 * DAY });
    expect((await w.stripe.invoices.retrieve(open.id)).status).toBe('open');
    await w.post('/_sandbox/clock/advance', { seconds: 5 * DAY });
    await w.post('/_sandbox/clock/advance', { seconds: 5 * DAY });
    expect(eventsOf(w, before).map((e) => e.type)).toEqual([
      'invoice.created',
      'invoice.updated',
      'invoice.finalized',
      'invoice.overdue',
    ]);
    // Uncollectible, then paid all the same (Stripe allows it), with a card that fails first.
    expect((await w.post(`/_sandbox/invoices/${open.id}/uncollectible`)).body).toMatchObject({
      status: 'uncollectible',
    });
    await w.post(`/_sandbox/customers/${customer.id}/payment_method`, { fails: true });
    expect((await w.post(`/_sandbox/invoices/${open.id}/pay`)).body).toMatchObject({
      status: 'uncollectible',
      attempt_count: 1,
    });
    await w.post(`/_sandbox/customers/${customer.id}/payment_method`, { fails: false });
    // The hosted page offers to pay it, and paying there is the same payment.
    const hosted = await fetch(open.hosted_invoice_url ?? '');
    expect(await hosted.text()).toContain(`action="/invoice/${open.id}/pay"`);
    expect((await w.post(`/invoice/${open.id}/pay`)).body).toMatchObject({ status: 'paid' });
    expect(
      eventsOf(w, before)
        .slice(4)
        .map((e) => e.type),
    ).toEqual([
      'invoice.marked_uncollectible',
      'invoice.payment_failed',
      'invoice.paid',
      'invoice.payment_succeeded',
    ]);
    // A paid invoice cannot be voided.
    expect((await w.post(`/_sandbox/invoices/${open.id}/void`)).status).toBe(400);
  });

  it('declines a flagged card at checkout and creates nothing', async () => {
    const w = await world();
    const customer = await w.stripe.customers.create({});
    await w.post(`/_sandbox/customers/${customer.id}/payment_method`, { fails: true });
    const session = await w.stripe.checkout.sessions.create({
      mode: 'subscription',
      customer: customer.id,
      line_items: [{ price: await w.priceId('pro_monthly'), quantity: 1 }],
      success_url: 'http://localhost/ok',
    });
    const before = w.sandbox.events().length;
    const declined = await w.post(`/checkout/${session.id}/pay`);
    expect(declined.status).toBe(402);
    expect(declined.body).toMatchObject({ error: { type: 'card_error', code: 'card_declined' } });
    expect(w.sandbox.events().length).toBe(before);
    expect((await w.stripe.checkout.sessions.retrieve(session.id)).status).toBe('open');
  });

  it('surfaces injected faults as the SDK’s typed errors', async () => {
    const w = await world();
    const noRetry = client(w.sandbox, { maxNetworkRetries: 0 });
    await w.post('/_sandbox/faults', { method: 'GET', pathPrefix: '/v1/prices', status: 429, count: 1 });
    const limited = noRetry.prices.list();
    await expect(limited).rejects.toBeInstanceOf(Stripe.errors.StripeRateLimitError);
    await expect(noRetry.prices.list()).resolves.toMatchObject({ object: 'list' });
    await w.post('/_sandbox/faults', { method: 'POST', pathPrefix: '/v1/customers', status: 503, count: 1 });
    await expect(noRetry.customers.create({})).rejects.toBeInstanceOf(Stripe.errors.StripeAPIError);
  });

  it('completes a payment-mode checkout with a payment intent', async () => {
    const w = await world();
    const customer = await w.stripe.customers.create({});
    const session = await w.stripe.checkout.sessions.create({
      mode: 'payment',
      customer: customer.id,
      line_items: [{ price: await w.priceId('credits_pack'), quantity: 3 }],
      payment_intent_data: { metadata: { ownerId: 'o-pay' } },
      success_url: 'http://localhost/ok',
    });
    expect(session.amount_total).toBe(3_000);
    const before = w.sandbox.events().length;
    const paid = paidSession.parse((await w.post(`/checkout/${session.id}/pay`)).body).session;
    expect(paid).toMatchObject({ status: 'complete', payment_status: 'paid', subscription: null });
    expect(paid.payment_intent).toMatch(/^pi_/);
    const events = eventsOf(w, before);
    expect(events.map((e) => e.type)).toEqual(['payment_intent.succeeded', 'checkout.session.completed']);
    expect(events[0]?.data.object).toMatchObject({
      amount: 3_000,
      status: 'succeeded',
      metadata: { ownerId: 'o-pay' },
    });

    const recurringInPayment = w.stripe.checkout.sessions.create({
      mode: 'payment',
      line_items: [{ price: await w.priceId('pro_monthly'), quantity: 1 }],
    });
    await expect(recurringInPayment).rejects.toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
  });

  it('answers unknown ids with a 404 invalid request error, and unknown parameters with a 400', async () => {
    const w = await world();
    const missing = w.stripe.subscriptions.retrieve('sub_missing');
    await expect(missing).rejects.toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    await expect(missing).rejects.toMatchObject({ statusCode: 404, code: 'resource_missing', param: 'id' });
    await expect(w.stripe.invoices.retrieve('in_missing')).rejects.toMatchObject({ statusCode: 404 });
    const session = w.stripe.checkout.sessions.create({
      mode: 'subscription',
      customer: 'cus_missing',
      line_items: [{ price: await w.priceId('pro_monthly'), quantity: 1 }],
    });
    await expect(session).rejects.toMatchObject({
      statusCode: 400,
      code: 'resource_missing',
      param: 'customer',
    });
    const typo = w.stripe.rawRequest('POST', '/v1/customers', { metadata: { a: 'b' }, emial: 'x' });
    await expect(typo).rejects.toMatchObject({ statusCode: 400, code: 'parameter_unknown', param: 'emial' });
    const noQuantity = w.stripe.checkout.sessions.create({
      mode: 'subscription',
      line_items: [{ price: await w.priceId('pro_monthly') }],
    });
    await expect(noQuantity).rejects.toMatchObject({
      statusCode: 400,
      code: 'parameter_missing',
      param: 'line_items[0][quantity]',
    });
  });

  it('expires an unpaid Checkout Session after 24 hours of sandbox time', async () => {
    const w = await world();
    const session = await w.stripe.checkout.sessions.create({
      mode: 'payment',
      line_items: [{ price: await w.priceId('credits_pack'), quantity: 1 }],
    });
    await w.post('/_sandbox/clock/advance', { seconds: DAY + 1 });
    expect(w.sandbox.events().at(-1)).toMatchObject({
      type: 'checkout.session.expired',
      created: session.expires_at,
      data: { object: { id: session.id, status: 'expired', url: null } },
    });
    expect((await w.post(`/checkout/${session.id}/pay`)).status).toBe(400);
    expect((await w.post('/_sandbox/clock/advance', { seconds: -1 })).status).toBe(400);
  });

  it('forces paused and active states with the matching events', async () => {
    const w = await world();
    const { subscriptionId } = await subscribe(w);
    const before = w.sandbox.events().length;
    const paused = await w.post(`/_sandbox/subscriptions/${subscriptionId}/status`, { status: 'paused' });
    expect(paused.body).toMatchObject({ status: 'paused' });
    await w.post(`/_sandbox/subscriptions/${subscriptionId}/status`, { status: 'active' });
    expect(eventsOf(w, before).map((e) => [e.type, e.data.previous_attributes?.status])).toEqual([
      ['customer.subscription.updated', 'active'],
      ['customer.subscription.paused', undefined],
      ['customer.subscription.updated', 'paused'],
      ['customer.subscription.resumed', undefined],
    ]);
  });

  it('retries a webhook until the receiver answers 2xx, then marks exhausted ones failed and moves on', async () => {
    const w = await world({ retry: { attempts: 3, baseDelayMs: 5 } });
    w.receiver.respondWith((_id, attempt) => (attempt < 3 ? 500 : 200));
    const customer = await w.stripe.customers.create({});
    await w.sandbox.idle();
    expect(w.receiver.received.map((r) => [r.event.type, r.attempt])).toEqual([['customer.created', 3]]);
    expect(w.sandbox.deliveries()).toEqual([
      { eventId: w.sandbox.events()[0]?.id, attempts: 3, status: 'delivered', lastStatusCode: 200 },
    ]);
    expect((await w.stripe.events.retrieve(w.sandbox.events()[0]?.id ?? '')).pending_webhooks).toBe(0);

    w.receiver.respondWith((id) => (id === w.sandbox.events()[1]?.id ? 503 : 200));
    await w.stripe.billingPortal.sessions.create({ customer: customer.id });
    await w.stripe.customers.create({});
    await w.sandbox.idle();
    const [, portal, second] = w.sandbox.deliveries();
    expect(portal).toMatchObject({ attempts: 3, status: 'failed', lastStatusCode: 503 });
    expect(second).toMatchObject({ attempts: 1, status: 'delivered' });
  });

  it('holds events without a webhook URL, and refuses another API version', async () => {
    const w = await world();
    w.sandbox.setWebhookUrl(undefined);
    await w.stripe.customers.create({});
    await w.sandbox.idle();
    expect(w.sandbox.deliveries()).toEqual([]);
    expect(w.sandbox.events()[0]?.pending_webhooks).toBe(0);
    const url = new URL(w.sandbox.url);
    const other = new Stripe('sk_test_sandbox', {
      host: url.hostname,
      port: Number(url.port),
      protocol: 'http',
      apiVersion: '2020-08-27' as typeof API_VERSION,
    });
    await expect(other.customers.create({})).rejects.toThrow(/renders API version/);
  });
});
