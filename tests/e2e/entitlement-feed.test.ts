import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { QueueClient } from '@azure/storage-queue';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { z } from 'zod';
import { CREDIT_PACKS, type CreditPack } from '../../src/billing/catalog.js';
import {
  type EntitlementChange,
  entitlementChangeSchema,
  OUTBOX_PREFIX,
  parseOutboxRow,
} from '../../src/billing/feed/outbox.js';
import { VERSION_ROW } from '../../src/billing/owner/keys.js';
import { startTestHost, type TestHost, token } from '../support/harness.js';

/**
 * The entitlement change feed end to end: changes over HTTP (and Stripe through the sandbox and the
 * processor) commit, the processor drains the outbox to the feed's Storage Queue on Azurite and posts
 * signed webhooks to a listener in this test; the README's verification recipe checks every delivery.
 */

const SECRET = 'feed-webhook-secret-0123456789abcdef';

/** The README's Node snippet, extracted and imported as written. */
type Verify = (rawBody: string, header: string, secret: string, toleranceSeconds?: number) => unknown;

async function readmeVerifier(): Promise<Verify> {
  const readme = readFileSync('README.md', 'utf8');
  const block = /```js\n\/\/ verify-entitlements-webhook\.mjs\n([\s\S]*?)```/.exec(readme)?.[1];
  if (!block) throw new Error('README: the webhook verification snippet is missing');
  const file = join(tmpdir(), `verify-entitlements-webhook-${randomUUID()}.mjs`);
  writeFileSync(file, block);
  const module: unknown = await import(pathToFileURL(file).href);
  const verifier = z.custom<Verify>((value) => typeof value === 'function', 'a function');
  return z.object({ verifyEntitlementsWebhook: verifier }).parse(module).verifyEntitlementsWebhook;
}

interface Delivery {
  readonly eventId: string;
  readonly signature: string;
  readonly body: string;
  readonly status: number;
}

describe('entitlement change feed over HTTP', () => {
  let host: TestHost;
  let service: string;
  let admin: string;
  let listener: Server;
  let feedQueue: QueueClient;
  const deliveries: Delivery[] = [];
  /** Per event id: statuses to answer, in order; then 200. */
  const plans = new Map<string, number[]>();
  /** Owners whose deliveries always fail (until removed). */
  const failingOwners = new Set<string>();
  const published: EntitlementChange[] = [];
  const feedQueueName = `feed-${randomUUID().slice(0, 8)}`;

  /** Everything on the feed queue so far, parsed (the message id must be the event id). */
  async function readFeed(): Promise<void> {
    for (;;) {
      const { receivedMessageItems: items } = await feedQueue.receiveMessages({
        numberOfMessages: 32,
        visibilityTimeout: 60,
      });
      if (items.length === 0) return;
      for (const item of items) {
        const envelope = z
          .object({ id: z.string(), body: z.unknown() })
          .parse(JSON.parse(Buffer.from(item.messageText, 'base64').toString('utf8')));
        const event = entitlementChangeSchema.parse(envelope.body);
        expect(envelope.id).toBe(event.id);
        published.push(event);
        await feedQueue.deleteMessage(item.messageId, item.popReceipt);
      }
    }
  }

  const outbox = async (ownerId: string) =>
    (await host.services.tables.billing.list(ownerId, { prefix: OUTBOX_PREFIX })).map(parseOutboxRow);
  const versionOf = async (ownerId: string) => {
    const row = await host.services.tables.billing.get(ownerId, VERSION_ROW);
    return typeof row?.props.version === 'number' ? row.props.version : 0;
  };
  /** Distinct published events of an owner, by version (duplicates are allowed, and dropped here). */
  const publishedFor = (ownerId: string) => {
    const byId = new Map(published.filter((e) => e.ownerId === ownerId).map((e) => [e.id, e]));
    return [...byId.values()].sort((a, b) => a.version - b.version);
  };
  /** Waits until everything in the owner's outbox was published; answers the owner's events. */
  async function settled(
    ownerId: string,
    options: { readonly worker?: boolean } = {},
  ): Promise<EntitlementChange[]> {
    const until = Date.now() + 20_000;
    for (;;) {
      if (options.worker !== false) await host.settle();
      await readFeed();
      const rows = await outbox(ownerId);
      const sent = publishedFor(ownerId);
      if (JSON.stringify(sent.map((e) => e.id)) === JSON.stringify(rows.map((e) => e.id))) {
        // Exactly what committed, the same payload as stored.
        expect(sent).toEqual(rows);
        return rows;
      }
      if (Date.now() > until)
        throw new Error(`published ${sent.map((e) => e.id)} but the outbox holds ${rows.map((e) => e.id)}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  const eventually = async (check: () => Promise<boolean>, what: string, ms = 30_000) => {
    const until = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > until) throw new Error(`not reached in ${ms} ms: ${what}`);
      await host.settle();
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  };
  const workflow = (id: string, orgId: string, extra: Record<string, unknown> = {}) =>
    host.call('PUT', `/api/directory/workflows/${id}`, {
      token: service,
      body: { workspace: { orgId }, nodeCount: 1, ...extra },
    });

  beforeAll(async () => {
    listener = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const eventId = String(request.headers['entitlements-event-id'] ?? '');
        const plan = plans.get(eventId);
        const status = failingOwners.has(eventId.split(':')[0] ?? '') ? 500 : (plan?.shift() ?? 200);
        deliveries.push({
          eventId,
          signature: String(request.headers['entitlements-signature'] ?? ''),
          body: Buffer.concat(chunks).toString('utf8'),
          status,
        });
        response.writeHead(status).end();
      });
    });
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
    const address = listener.address();
    if (address === null || typeof address === 'string') throw new Error('no listener port');
    host = await startTestHost({
      env: {
        ENTITLEMENT_FEED_QUEUE_NAME: feedQueueName,
        ENTITLEMENT_WEBHOOK_URL: `http://127.0.0.1:${address.port}/hooks/entitlements`,
        ENTITLEMENT_WEBHOOK_SECRET: SECRET,
        ENTITLEMENT_WEBHOOK_MAX_ATTEMPTS: '3',
        ENTITLEMENT_WEBHOOK_RETRY_BASE_SECONDS: '1',
        ENTITLEMENT_WEBHOOK_RETRY_MAX_SECONDS: '1',
      },
    });
    feedQueue = new QueueClient(inject('azuriteConnection'), feedQueueName);
    await feedQueue.createIfNotExists();
    service = await host.serviceToken();
    admin = await token({ sub: 'ops', roles: ['admin'] });
  }, 60_000);

  afterAll(async () => {
    await host?.close();
    await new Promise((resolve) => listener?.close(resolve));
  });

  it('a workflow create and delete crossing a limit: one event each, after commit, at the new version', async () => {
    const ownerId = 'u-feed-wf';
    await host.call('PUT', '/api/directory/orgs/o-feed-wf', { token: service, body: { creatorId: ownerId } });
    for (let i = 1; i <= 4; i++) expect((await workflow(`wf-feed-${i}`, 'o-feed-wf')).status).toBe(201);
    expect(await settled(ownerId)).toEqual([]);
    const before = await versionOf(ownerId);
    expect((await workflow('wf-feed-5', 'o-feed-wf')).status).toBe(201);
    const crossed = await versionOf(ownerId);
    expect(crossed).toBe(before + 1);
    const [up] = await settled(ownerId);
    expect(up).toMatchObject({ version: crossed, changed: ['exhausted'], cause: { kind: 'request' } });
    expect(up?.after.exhausted).toEqual(['workflows_per_org:o-feed-wf']);
    expect((await host.call('DELETE', '/api/directory/workflows/wf-feed-5', { token: service })).status).toBe(
      204,
    );
    const events = await settled(ownerId);
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({ version: await versionOf(ownerId), changed: ['exhausted'] });
    expect(events[1]?.after.exhausted).toEqual([]);
  });

  it('usage exhaustion: one event when the allowance and credits run out, none before', async () => {
    const ownerId = 'u-feed-usage';
    await host.call('PUT', '/api/directory/orgs/o-feed-usage', {
      token: service,
      body: { creatorId: ownerId },
    });
    const consume = (key: string, quantity: number) =>
      host.call('POST', '/api/usage/consume', {
        token: service,
        body: { subject: { orgId: 'o-feed-usage' }, meter: 'executions', quantity, idempotencyKey: key },
      });
    expect((await consume('a', 500)).status).toBe(200);
    expect((await consume('b', 499)).status).toBe(200);
    expect(await settled(ownerId)).toEqual([]);
    const before = await versionOf(ownerId);
    const last = await consume('c', 1);
    expect(await versionOf(ownerId)).toBe(before + 1);
    expect(last.status).toBe(200);
    const [event] = await settled(ownerId);
    expect(event).toMatchObject({
      changed: ['allowanceExhausted', 'exhausted'],
      version: await versionOf(ownerId),
    });
    expect((last.body as { version: number }).version).toBe(event?.version);
  });

  it('over a limit, then lock picks: the lock set is published', async () => {
    const ownerId = 'u-feed-locks';
    await host.call('PUT', '/api/directory/orgs/o-feed-locks', {
      token: service,
      body: { creatorId: ownerId },
    });
    for (let i = 1; i <= 6; i++)
      expect((await workflow(`wf-lock-${i}`, 'o-feed-locks', { enforce: false })).status).toBe(201);
    const before = await settled(ownerId);
    expect(before.length).toBeGreaterThanOrEqual(1);
    const locked = before.at(-1)?.after.locks;
    expect(locked).toMatchObject({ orgs: { 'o-feed-locks': expect.any(Array) } });
    const owner = await token({ sub: ownerId, org: 'o-feed-locks' });
    const version = await versionOf(ownerId);
    const picks = await host.call('PUT', '/api/billing/locks', {
      token: owner,
      body: { workflows: ['wf-lock-6'] },
    });
    expect(picks.status, picks.text).toBe(200);
    const after = await settled(ownerId);
    expect(after).toHaveLength(before.length + 1);
    const pick = after.at(-1);
    expect(pick?.version).toBe(version + 1);
    expect(pick?.changed).toEqual(['locks']);
    expect(pick?.after.locks).toMatchObject({
      orgs: { 'o-feed-locks': expect.arrayContaining(['wf-lock-6']) },
    });
  });

  it('a subscription through sandbox checkout, then a seat cap: one event each, caused by the Stripe event', async () => {
    const ownerId = 'u-feed-sub';
    await host.call('PUT', '/api/directory/orgs/o-feed-sub', {
      token: service,
      body: { creatorId: ownerId },
    });
    const owner = await token({ sub: ownerId, org: 'o-feed-sub' });
    const checkout = await host.call('POST', '/api/billing/checkout', {
      token: owner,
      body: { plan: 'team', interval: 'monthly' },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await host.sandboxOk('POST', `/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    await eventually(async () => (await outbox(ownerId)).length > 0, 'the subscription event');
    const [subscribed] = await settled(ownerId);
    expect(subscribed?.changed).toEqual(expect.arrayContaining(['plan', 'status', 'accessLevel']));
    expect(subscribed).toMatchObject({
      before: { plan: 'free' },
      after: { plan: 'team' },
      cause: { kind: 'stripe_event', id: expect.stringMatching(/^evt_/) },
    });
    // Every other copy and type of event the payment produced changed nothing more.
    expect(await settled(ownerId)).toHaveLength(1);

    const version = await versionOf(ownerId);
    const cap = await host.call('PUT', '/api/billing/seats', { token: owner, body: { maxSeats: 4 } });
    expect(cap.status, cap.text).toBe(200);
    const events = await settled(ownerId);
    expect(events).toHaveLength(2);
    expect(events[1]).toMatchObject({
      changed: ['maxSeats'],
      after: { maxSeats: 4 },
      version: version + 1,
    });
    expect(await versionOf(ownerId)).toBe(version + 1);
  });

  it('credits granted: one event (credits become available)', async () => {
    const ownerId = 'u-feed-credits';
    await host.call('PUT', '/api/directory/orgs/o-feed-credits', {
      token: service,
      body: { creatorId: ownerId },
    });
    const owner = await token({ sub: ownerId, org: 'o-feed-credits' });
    const pack = CREDIT_PACKS[0] as CreditPack;
    const checkout = await host.call('POST', '/api/billing/credits/checkout', {
      token: owner,
      body: { pack: pack.id },
    });
    expect(checkout.status, checkout.text).toBe(201);
    await host.sandboxOk('POST', `/checkout/${(checkout.body as { sessionId: string }).sessionId}/pay`);
    await eventually(async () => (await outbox(ownerId)).length > 0, 'the credits event');
    const events = await settled(ownerId);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({
      changed: ['creditsAvailable'],
      after: { creditsAvailable: true },
      cause: { kind: 'stripe_event' },
    });
  });

  it('operator changes: an override, an enforcement setting and a contract publish one event each', async () => {
    const ownerId = 'u-feed-ops';
    await host.call('PUT', '/api/directory/orgs/o-feed-ops', {
      token: service,
      body: { creatorId: ownerId },
    });
    expect(await settled(ownerId)).toEqual([]);
    const ops = async (method: string, path: string, body: unknown, status: number) => {
      const before = await versionOf(ownerId);
      const answer = await host.call(method, `/api/ops/owners/${ownerId}/${path}`, { token: admin, body });
      expect(answer.status, answer.text).toBe(status);
      expect(await versionOf(ownerId)).toBe(before + 1);
      return (await settled(ownerId)).at(-1);
    };
    const expiresAt = new Date(Date.now() + 86_400_000).toISOString();
    const granted = await ops(
      'PUT',
      'overrides',
      { limits: { workflows_per_org: 40 }, flags: { ai_nodes: true }, expiresAt, reason: 'feed test' },
      201,
    );
    expect(granted?.changed).toEqual(['flags.ai_nodes', 'limits.workflows_per_org', 'validUntil']);
    expect(granted?.after).toMatchObject({ limits: { workflows_per_org: 40 }, validUntil: expiresAt });
    expect(granted?.cause.kind).toBe('request');

    const monitored = await ops('PUT', 'enforcement', { mode: 'monitor', reason: 'feed test' }, 201);
    expect(monitored?.changed).toEqual(['enforcement']);
    expect(monitored?.after.enforcement).toEqual({ mode: 'monitor', features: {} });

    const startsAt = new Date(Date.now() - 60_000).toISOString();
    const endsAt = new Date(Date.now() + 30 * 86_400_000).toISOString();
    const contracted = await ops(
      'PUT',
      'contract',
      { plan: 'enterprise', seats: 25, startsAt, endsAt, billing: 'manual', reason: 'feed test' },
      201,
    );
    expect(contracted?.changed).toEqual(expect.arrayContaining(['plan', 'limits.seats']));
    // The override stays on top of the contract, and the earliest clock change is still its expiry.
    expect(contracted?.after).toMatchObject({
      plan: 'enterprise',
      limits: { workflows_per_org: 40, seats: 25 },
      validUntil: expiresAt,
    });
  });

  it('signs every webhook (verified with the README recipe) and retries: 500, 500, then 200', async () => {
    const verify = await readmeVerifier();
    const ownerId = 'u-feed-hook';
    await host.call('PUT', '/api/directory/orgs/o-feed-hook', {
      token: service,
      body: { creatorId: ownerId },
    });
    for (let i = 1; i <= 4; i++) await workflow(`wf-hook-${i}`, 'o-feed-hook');
    const next = (await versionOf(ownerId)) + 1;
    plans.set(`${ownerId}:${next}`, [500, 500]);
    await workflow('wf-hook-5', 'o-feed-hook');
    const [event] = await settled(ownerId);
    expect(event?.version).toBe(next);
    await eventually(
      async () => deliveries.some((d) => d.eventId === event?.id && d.status === 200),
      'the third attempt',
    );
    const attempts = deliveries.filter((d) => d.eventId === event?.id);
    expect(attempts.map((d) => d.status)).toEqual([500, 500, 200]);
    for (const attempt of attempts) {
      expect(attempt.signature).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
      expect(verify(attempt.body, attempt.signature, SECRET)).toEqual(event);
    }
    const body = attempts[0]?.body ?? '';
    const signature = attempts[0]?.signature ?? '';
    expect(() => verify(`${body} `, signature, SECRET)).toThrow(/bad signature/);
    expect(() => verify(body, signature, 'another-secret-of-32-characters-xx')).toThrow(/bad signature/);
  });

  it('exhausted deliveries are listed and replayed by an admin; user and service tokens get 403', async () => {
    const ownerId = 'u-feed-dead';
    failingOwners.add(ownerId);
    await host.call('PUT', '/api/directory/orgs/o-feed-dead', {
      token: service,
      body: { creatorId: ownerId },
    });
    for (let i = 1; i <= 5; i++) await workflow(`wf-dead-${i}`, 'o-feed-dead');
    const [event] = await settled(ownerId);
    const id = event?.id ?? '';
    const failed = async () => {
      const list = await host.call('GET', '/api/ops/entitlements/deliveries/failed?limit=100', {
        token: admin,
      });
      expect(list.status, list.text).toBe(200);
      return (list.body as { items: Array<{ id: string; attempts: number; lastStatus: number }> }).items;
    };
    await eventually(async () => (await failed()).some((f) => f.id === id), 'the failed delivery');
    expect((await failed()).find((f) => f.id === id)).toMatchObject({ attempts: 3, lastStatus: 500 });
    expect(deliveries.filter((d) => d.eventId === id).map((d) => d.status)).toEqual([500, 500, 500]);

    const owner = await token({ sub: ownerId, org: 'o-feed-dead' });
    for (const who of [service, owner]) {
      const list = await host.call('GET', '/api/ops/entitlements/deliveries/failed', { token: who });
      expect(list.status).toBe(403);
      expect(list.body).toMatchObject({ code: 'admin_role_required' });
      const replay = await host.call('POST', '/api/ops/entitlements/deliveries/replay', {
        token: who,
        body: { ids: [id] },
      });
      expect(replay.status).toBe(403);
    }

    failingOwners.delete(ownerId);
    const replay = await host.call('POST', '/api/ops/entitlements/deliveries/replay', {
      token: admin,
      body: { ids: [id, `${ownerId}:999999`] },
    });
    expect(replay.status, replay.text).toBe(200);
    expect(replay.body).toEqual({ replayed: [id], notFound: [`${ownerId}:999999`], more: false });
    await eventually(
      async () => deliveries.some((d) => d.eventId === id && d.status === 200),
      'the replayed delivery',
    );
    expect((await failed()).some((f) => f.id === id)).toBe(false);
  });

  it('changes?since= returns exactly the missed events, ascending; a user reads only their own', async () => {
    const ownerId = 'u-feed-wf';
    const all = await settled(ownerId);
    expect(all.length).toBeGreaterThanOrEqual(2);
    const since = all[0]?.version ?? 0;
    const missed = await host.call('GET', `/api/entitlements/changes?since=${since}&ownerId=${ownerId}`, {
      token: service,
    });
    expect(missed.status, missed.text).toBe(200);
    expect(missed.body).toEqual({ ownerId, items: all.slice(1), nextSince: null });
    const paged = await host.call('GET', `/api/entitlements/changes?since=0&ownerId=${ownerId}&limit=1`, {
      token: service,
    });
    expect(paged.body).toMatchObject({ items: [all[0]], nextSince: all[0]?.version });

    const owner = await token({ sub: ownerId });
    const own = await host.call('GET', `/api/entitlements/changes?since=0`, { token: owner });
    expect(own.status, own.text).toBe(200);
    expect((own.body as { items: unknown[] }).items).toEqual(all);
    const stranger = await token({ sub: 'u-someone-else' });
    const refused = await host.call('GET', `/api/entitlements/changes?since=0&ownerId=${ownerId}`, {
      token: stranger,
    });
    expect(refused.status).toBe(403);
    const unnamed = await host.call('GET', '/api/entitlements/changes?since=0', { token: service });
    expect(unnamed.status).toBe(400);
  });

  // Last: it stops the queue worker.
  it('a crash between commit and enqueue (the drain request lost): the sweep publishes the event, once', async () => {
    await host.settle();
    await host.worker?.stop();
    const ownerId = 'u-feed-crash';
    await host.call('PUT', '/api/directory/orgs/o-feed-crash', {
      token: service,
      body: { creatorId: ownerId },
    });
    for (let i = 1; i <= 5; i++) expect((await workflow(`wf-crash-${i}`, 'o-feed-crash')).status).toBe(201);
    // Whatever was queued after the commit is gone, as if the process had died before sending it.
    await new QueueClient(inject('azuriteConnection'), host.services.config.queueName).clearMessages();
    await readFeed();
    expect(publishedFor(ownerId)).toEqual([]);
    const [event] = await outbox(ownerId);
    expect(event?.version).toBe(await versionOf(ownerId));
    // Listings younger than a minute are left to their own drain; then the sweep takes it.
    expect((await host.services.feed.drain.sweep()).published).toBe(0);
    const report = await host.services.feed.drain.sweep({ minAgeSeconds: 0 });
    expect(report.published).toBeGreaterThanOrEqual(1);
    expect(await settled(ownerId, { worker: false })).toEqual([event]);
    // Run again (a redelivered sweep): nothing more to publish for the owner.
    await host.services.feed.drain.sweep({ minAgeSeconds: 0 });
    await readFeed();
    expect(publishedFor(ownerId).map((e) => e.id)).toEqual([event?.id]);
  });
});
