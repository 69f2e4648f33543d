import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { addMonthsClamped } from '../../src/billing/periods.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';
import { manualClock } from '../support/memory.js';

const proExecutions = catalog.pro.limits.executions ?? 0;

/**
 * Execution allowances per window against real subscription periods from the Stripe sandbox: a renewal
 * whose event is late never opens a second allowance in one window, and a yearly plan gets its
 * allowance every month. The host's clock and the sandbox's are moved by the test.
 */
describe('usage windows of paid plans, end to end', () => {
  let host: TestHost;
  let service: string;
  const clock = manualClock();

  const sandbox = (method: string, path: string, body?: unknown) => host.sandboxOk(method, path, body);
  let keys = 0;
  const consume = (userId: string, quantity: number) =>
    host.call('POST', '/api/usage/consume', {
      token: service,
      body: { subject: { userId }, meter: 'executions', quantity, idempotencyKey: `periods-${++keys}` },
    });
  const subscribe = async (userId: string, interval: 'monthly' | 'yearly') => {
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: await token({ sub: userId }),
      body: { plan: 'pro', interval },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await sandbox('POST', `/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    await host.settle();
    const summary = await host.call('GET', '/api/billing/summary', { token: await token({ sub: userId }) });
    return summary.body as { plan: { name: string; interval: string }; currentPeriodEnd: string };
  };

  beforeAll(async () => {
    host = await startTestHost({ clock });
    service = await host.serviceToken();
  });
  afterAll(async () => {
    await host?.close();
  });

  it('gives one allowance per window across a renewal whose event is late, never two', async () => {
    clock.set(String((await sandbox('GET', '/_sandbox/clock')).now));
    const summary = await subscribe('u-late', 'monthly');
    expect(summary.plan).toMatchObject({ name: 'pro', interval: 'monthly' });
    const end = new Date(summary.currentPeriodEnd);

    expect((await consume('u-late', proExecutions)).status).toBe(200);
    expect((await consume('u-late', 1)).status).toBe(402);

    // The period ends; Stripe has not renewed yet (its clock has not moved), so no event has come.
    clock.set(new Date(end.getTime() + 60 * 60 * 1000).toISOString());
    const fresh = await consume('u-late', proExecutions);
    expect(fresh.status, fresh.text).toBe(200);
    expect(fresh.body).toMatchObject({ periodStart: end.toISOString() });
    expect((await consume('u-late', 1)).status).toBe(402);

    // The renewal arrives: its period starts where the old one ended, so the same counter goes on.
    await sandbox('POST', '/_sandbox/clock/advance', { to: clock.now().toISOString() });
    await host.settle();
    const renewed = await host.call('GET', '/api/billing/summary', { token: await token({ sub: 'u-late' }) });
    expect(
      new Date((renewed.body as { currentPeriodEnd: string }).currentPeriodEnd).getTime(),
    ).toBeGreaterThan(end.getTime());
    const after = await consume('u-late', 1);
    expect(after.status, after.text).toBe(402);
    expect(after.body).toMatchObject({ remaining: 0 });
  });

  it('gives a yearly plan its allowance in each of the twelve months anchored on the cycle', async () => {
    clock.set(String((await sandbox('GET', '/_sandbox/clock')).now));
    const summary = await subscribe('u-yearly', 'yearly');
    expect(summary.plan).toMatchObject({ name: 'pro', interval: 'yearly' });
    const anchor = clock.now();
    const starts = new Set<string>();
    for (let month = 0; month < 12; month++) {
      // The middle of each anchored month.
      clock.set(new Date(addMonthsClamped(anchor, month).getTime() + 14 * 24 * 3600 * 1000).toISOString());
      const used = await consume('u-yearly', proExecutions);
      expect(used.status, `month ${month}: ${used.text}`).toBe(200);
      starts.add(String((used.body as { periodStart: string }).periodStart));
      expect((await consume('u-yearly', 1)).status, `month ${month}`).toBe(402);
    }
    expect(starts.size).toBe(12);
  });
});
