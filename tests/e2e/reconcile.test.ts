import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * Drift the webhooks never told us about, repaired by the reconciler over HTTP: local host, Stripe
 * sandbox with webhook delivery switched off, Azurite. Needs the gateway's `listEvents` and
 * `listPaidPaymentSessions` (and the sandbox's listings behind them).
 */
describe('the reconciler end to end', () => {
  let host: TestHost;
  let admin: string;

  const sandbox = (path: string, body: unknown = {}) => host.sandboxOk('POST', path, body);
  /** An owner (an organization's creator) with a paid Pro subscription, applied by its webhooks. */
  const subscribedOwner = async (userId: string, orgId: string) => {
    const service = await host.serviceToken();
    await host.call('PUT', `/api/directory/orgs/${orgId}`, { token: service, body: { creatorId: userId } });
    const owner = await token({ sub: userId, org: orgId });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await sandbox(`/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    await host.settle();
    return owner;
  };
  const summary = async (owner: string) =>
    (await host.call('GET', '/api/billing/summary', { token: owner })).body as {
      plan: { name: string };
      status: string;
      accessLevel: string;
    };
  const reconcile = async (body?: unknown) => {
    const response = await host.call('POST', '/api/ops/reconcile', {
      token: admin,
      ...(body === undefined ? {} : { body }),
    });
    expect(response.status, response.text).toBe(200);
    return response.body as {
      outcome: string;
      changes: Array<{ ownerId: string; status: string; foundBy: string }>;
      grants: Array<{ ownerId: string; credits: number }>;
      failures: unknown[];
      runId: string;
    };
  };
  const webhooks = (enabled: boolean) => sandbox('/_sandbox/webhooks', { enabled });

  beforeAll(async () => {
    host = await startTestHost();
    admin = await token({ sub: 'ops', roles: ['admin'] });
  });
  afterAll(async () => {
    await host?.close();
  });

  it('refuses users and services', async () => {
    for (const roles of [[], ['service']]) {
      const response = await host.call('POST', '/api/ops/reconcile', {
        token: await token({ sub: 'u-rec', roles }),
        body: {},
      });
      expect(response.status).toBe(403);
    }
  });

  it('repairs one owner whose subscription became unpaid while webhooks were lost, audited as reconcile', async () => {
    const owner = await subscribedOwner('u-rec-a', 'o-rec-a');
    expect(await summary(owner)).toMatchObject({ plan: { name: 'pro' }, status: 'active' });
    await webhooks(false);
    const subscriptionId = (await host.services.owners.read('u-rec-a')).subscription?.state
      .stripeSubscriptionId;
    await sandbox(`/_sandbox/subscriptions/${subscriptionId}/status`, { status: 'unpaid' });
    expect((await summary(owner)).status).toBe('active'); // nothing told us

    const report = await reconcile({ ownerId: 'u-rec-a' });
    expect(report.changes).toEqual([expect.objectContaining({ ownerId: 'u-rec-a', status: 'unpaid' })]);
    expect(await summary(owner)).toMatchObject({ status: 'unpaid', accessLevel: 'locked' });

    // Audit keys sort newest first.
    const audit = await host.services.tables.billing.list('u-rec-a', { prefix: 'audit|' });
    expect(audit.at(0)?.props).toMatchObject({
      causeKind: 'reconcile',
      causeId: report.runId,
      actor: 'reconciler',
      changed: expect.stringContaining('status'),
    });
    await webhooks(true);
    // Last, as it needs the gateway's session listing (the owner's paid packs are looked for too).
    expect(report.failures).toEqual([]);
    expect(report.outcome).toBe('completed');
  });

  it('finds a checkout and a credit pack paid while webhooks were off through Stripe’s lists, once', async () => {
    await webhooks(false);
    const service = await host.serviceToken();
    await host.call('PUT', '/api/directory/orgs/o-rec-b', { token: service, body: { creatorId: 'u-rec-b' } });
    const owner = await token({ sub: 'u-rec-b', org: 'o-rec-b' });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'pro', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await sandbox(`/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    const pack = await host.call('POST', '/api/billing/credits/checkout', {
      token: owner,
      body: { pack: 'credits_5k' },
    });
    expect(pack.status, pack.text).toBe(201);
    await sandbox(`/checkout/${(pack.body as { sessionId: string }).sessionId}/pay`);
    expect((await summary(owner)).plan.name).toBe('free');

    const report = await reconcile();
    expect(report.failures).toEqual([]);
    expect(report.changes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ ownerId: 'u-rec-b', status: 'active', foundBy: 'events' }),
      ]),
    );
    expect(report.grants).toEqual([expect.objectContaining({ ownerId: 'u-rec-b', credits: 5_000 })]);
    expect(await summary(owner)).toMatchObject({ plan: { name: 'pro' }, status: 'active' });
    expect(await host.services.credits.balance('u-rec-b')).toBe(5_000);

    // Run again: nothing left to repair, nothing granted twice.
    const again = await reconcile();
    expect(again.changes).toEqual([]);
    expect(again.grants).toEqual([]);
    expect(await host.services.credits.balance('u-rec-b')).toBe(5_000);
    await webhooks(true);
  });
});
