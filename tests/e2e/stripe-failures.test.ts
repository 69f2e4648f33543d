import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

/** What the API answers when Stripe misbehaves (faults injected in the sandbox), and what it keeps serving. */
describe('when Stripe fails', () => {
  let host: TestHost;
  const fault = async (method: string, pathPrefix: string, status: number, count: number) => {
    const response = await fetch(`${host.sandbox?.url}/_sandbox/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method, pathPrefix, status, count }),
    });
    expect(response.ok).toBe(true);
  };
  const clearFaults = () => fetch(`${host.sandbox?.url}/_sandbox/faults`, { method: 'DELETE' });

  beforeAll(async () => {
    host = await startTestHost({ env: { STRIPE_MAX_NETWORK_RETRIES: '0' } });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('serves limits without prices when Stripe is down and nothing is cached', async () => {
    await fault('GET', '/v1/prices', 503, 100);
    const response = await host.call('GET', '/api/plans');
    expect(response.status).toBe(200);
    const body = response.body as {
      pricing: { status: string };
      plans: Array<{ limits: unknown; prices: unknown }>;
    };
    expect(body.pricing.status).toBe('unavailable');
    expect(body.plans[1]).toMatchObject({
      limits: catalog.pro.limits,
      prices: { monthly: null, yearly: null },
    });
    await clearFaults();
  });

  it('serves live prices, then the cached ones marked stale when Stripe fails', async () => {
    const live = (await host.call('GET', '/api/plans')).body as {
      pricing: { status: string };
      plans: Array<{ name: string; prices: { monthly: { amount: number } | null } | null }>;
    };
    expect(live.pricing.status).toBe('live');
    expect(live.plans.find((p) => p.name === 'pro')?.prices?.monthly?.amount).toBe(
      catalog.pro.prices?.monthly.unitAmount,
    );

    // A fresh process over the same tables, with the cache aged past its freshness and Stripe failing.
    const later = await startTestHost({
      sandbox: host.sandbox,
      env: {
        BILLING_TABLE_PREFIX: host.services.config.tablePrefix,
        BILLING_QUEUE_NAME: host.services.config.queueName,
        STRIPE_MAX_NETWORK_RETRIES: '0',
      },
      clock: { now: () => new Date(Date.now() + 2 * 60 * 60 * 1000) },
      worker: false,
    });
    try {
      await fault('GET', '/v1/prices', 429, 100);
      const stale = (await later.call('GET', '/api/plans')).body as typeof live;
      expect(stale.pricing.status).toBe('stale');
      expect(stale.plans.find((p) => p.name === 'pro')?.prices?.monthly?.amount).toBe(
        catalog.pro.prices?.monthly.unitAmount,
      );
    } finally {
      await clearFaults();
      await later.close();
    }
  });

  it('answers 503 with Retry-After when Stripe rate limits or is down, and creates nothing twice', async () => {
    const service = await host.serviceToken();
    await host.call('PUT', '/api/directory/orgs/o-fail', { token: service, body: { creatorId: 'u-fail' } });
    const owner = await token({ sub: 'u-fail', org: 'o-fail' });
    await fault('POST', '/v1/checkout/sessions', 429, 1);
    const limited = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(limited.status, limited.text).toBe(503);
    expect(limited.body).toMatchObject({ code: 'payments_rate_limited' });
    expect(limited.headers.get('retry-after')).not.toBeNull();

    await fault('POST', '/v1/checkout/sessions', 500, 1);
    const down = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(down.body).toMatchObject({ code: 'payments_unavailable' });

    // The retry succeeds, with the customer created on the first attempt reused, not duplicated.
    const customer = await host.services.customers.customerOf('u-fail');
    const ok = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(ok.status, ok.text).toBe(201);
    expect(await host.services.customers.customerOf('u-fail')).toBe(customer);
  });

  it('creates one Stripe customer per owner under concurrency', async () => {
    const ids = await Promise.all(
      Array.from({ length: 8 }, () => host.services.customers.ensure('u-concurrent')),
    );
    expect(new Set(ids).size).toBe(1);
    expect(await host.services.customers.ownerOf(ids[0] ?? '')).toBe('u-concurrent');
  });
});
