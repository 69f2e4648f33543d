import { describe, expect, it } from 'vitest';
import { withCause } from '../../src/billing/feed/cause.js';
import { drainRequester } from '../../src/billing/feed/drain.js';
import { drainMessageSchema } from '../../src/billing/feed/messages.js';
import { FEED_PENDING_PARTITION, OutboxNoRoomError } from '../../src/billing/feed/outbox.js';
import { SEAT_CAP_ROW } from '../../src/billing/owner/keys.js';
import { withVersion } from '../../src/billing/owner/snapshot.js';
import {
  crashTheChange,
  crashTheDrain,
  givenFourWorkflows,
  memoryFeedTables,
  org,
  outbox,
  published,
  recordingQueue,
  versionOf,
  world,
} from '../support/feed-world.js';

/**
 * The entitlement feed on the in-memory twin: one outbox row per change that moves what the owner is
 * entitled to, in the change's own transaction; none for a change that moves nothing; published at least
 * once whatever storage or queue call fails, and never for a change that did not commit. The crash runs
 * are repeated on Azurite in tests/integration/entitlement-feed-crash.test.ts.
 */

describe('entitlement feed: the outbox', () => {
  it('writes one row, in the change transaction, only for a change that moves the view', async () => {
    const { services, queue } = world();
    await givenFourWorkflows(services);
    expect(await outbox(services, 'alice')).toEqual([]);
    const before = await versionOf(services, 'alice');
    await withCause({ kind: 'request', id: 'req-1' }, () =>
      services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 }),
    );
    const after = await versionOf(services, 'alice');
    expect(after).toBe(before + 1);
    const rows = await outbox(services, 'alice');
    expect(rows).toHaveLength(1);
    const [event] = rows;
    expect(event).toMatchObject({
      type: 'entitlements.changed',
      id: `alice:${after}`,
      ownerId: 'alice',
      version: after,
      changed: ['exhausted'],
      cause: { kind: 'request', id: 'req-1' },
    });
    expect(event?.before.exhausted).toEqual([]);
    expect(event?.after.exhausted).toEqual(['workflows_per_org:acme']);
    expect(event?.after.plan).toBe('free');
    // The drain was asked for once the change committed.
    const drains = queue.sent.filter((m) => drainMessageSchema.safeParse(m.body).success);
    expect(drains).toHaveLength(1);
    // Deleting one brings it back under the limit: one more event.
    await services.directory.deleteWorkflow('wf-5');
    const again = await outbox(services, 'alice');
    expect(again.map((e) => e.changed)).toEqual([['exhausted'], ['exhausted']]);
    expect(again[1]?.after.exhausted).toEqual([]);
  });

  it('consumption within the allowance writes no row (the feed has version gaps)', async () => {
    const { services } = world();
    await services.directory.putOrg('acme', { creatorId: 'alice', name: 'Acme' });
    const v0 = await versionOf(services, 'alice');
    for (let i = 0; i < 3; i++)
      await services.usage.consume({
        subject: { orgId: 'acme' },
        meter: 'executions',
        quantity: 10,
        idempotencyKey: `k${i}`,
      });
    expect(await versionOf(services, 'alice')).toBe(v0 + 3);
    expect(await outbox(services, 'alice')).toEqual([]);
    // Exhausting the allowance is a change.
    await services.usage.consume({
      subject: { orgId: 'acme' },
      meter: 'executions',
      quantity: 970,
      idempotencyKey: 'last',
    });
    const rows = await outbox(services, 'alice');
    expect(rows.map((e) => e.changed)).toEqual([['allowanceExhausted', 'exhausted']]);
    expect(rows[0]?.version).toBe(v0 + 4);
  });

  it('drains in version order, at least once, and only moves the cursor past what it sent', async () => {
    const { services, transport } = world();
    await givenFourWorkflows(services);
    await services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    await services.directory.deleteWorkflow('wf-5');
    transport.fail(true);
    await expect(services.feed.drain.drain('alice')).rejects.toThrow(/down/);
    transport.fail(false);
    const first = await services.feed.drain.drain('alice');
    expect(first.published).toHaveLength(2);
    expect(first.settled).toBe(true);
    const second = await services.feed.drain.drain('alice');
    expect(second.published).toEqual([]);
    const events = published(transport.sent);
    expect(events.map((e) => e.version)).toEqual(first.published);
    expect(await services.tables.billing.list(FEED_PENDING_PARTITION)).toEqual([]);
  });

  it('catch-up: changes after a version, ascending, paginated', async () => {
    const { services } = world();
    await givenFourWorkflows(services);
    for (let i = 0; i < 3; i++) {
      await services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
      await services.directory.deleteWorkflow('wf-5');
    }
    const all = await outbox(services, 'alice');
    expect(all).toHaveLength(6);
    const page1 = await services.feed.changes('alice', 0, 4);
    expect(page1.items.map((e) => e.version)).toEqual(all.slice(0, 4).map((e) => e.version));
    expect(page1.nextSince).toBe(all[3]?.version);
    const page2 = await services.feed.changes('alice', page1.nextSince ?? 0, 4);
    expect(page2.items.map((e) => e.version)).toEqual(all.slice(4).map((e) => e.version));
    expect(page2.nextSince).toBeNull();
    const missed = await services.feed.changes('alice', all[2]?.version ?? 0, 100);
    expect(missed.items.map((e) => e.version)).toEqual(all.slice(3).map((e) => e.version));
  });
});

describe('entitlement feed: drain requests', () => {
  it('are coalesced per owner: one at once, one more for a burst when the window closes', async () => {
    const queue = recordingQueue('billing-events');
    const request = drainRequester(queue.queue, () => undefined, { windowMs: 40 });
    await request('alice', 1);
    await request('alice', 2);
    await request('alice', 3);
    await request('bob', 7);
    expect(queue.sent.map((m) => m.id)).toEqual(['feed-drain-alice-v1-0', 'feed-drain-bob-v7-0']);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(queue.sent.map((m) => m.id)).toEqual([
      'feed-drain-alice-v1-0',
      'feed-drain-bob-v7-0',
      'feed-drain-alice-v3-0',
    ]);
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(queue.sent).toHaveLength(3);
    await request('alice', 4);
    expect(queue.sent.at(-1)?.id).toBe('feed-drain-alice-v4-0');
  });
});

describe('entitlement feed: a full transaction', () => {
  it('refuses a change that leaves no action free for its outbox row, writing nothing', async () => {
    const { services } = world();
    const snapshot = await services.owners.read('alice');
    const filler = Array.from({ length: 98 }, (_, i) => ({
      kind: 'create' as const,
      rowKey: `s|o|zz${String(i).padStart(3, '0')}`,
      props: { n: i },
    }));
    const actions = withVersion(snapshot, [
      ...filler,
      { kind: 'create', rowKey: SEAT_CAP_ROW, props: { maxSeats: 3, updatedAt: '2026-11-15T12:00:00.000Z' } },
    ]);
    expect(actions).toHaveLength(100);
    await expect(services.tables.billing.transact('alice', actions)).rejects.toBeInstanceOf(
      OutboxNoRoomError,
    );
    expect(await services.tables.billing.list('alice')).toEqual([]);
  });
});

describe('entitlement feed: retention', () => {
  it('prunes published events past the window, never an unpublished one', async () => {
    const { services } = world();
    await givenFourWorkflows(services);
    await services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    await services.feed.drain.drain('alice');
    await services.directory.deleteWorkflow('wf-5');
    const [published, pending] = await outbox(services, 'alice');
    // Written 2026-11-15, kept 35 days: due 2026-12-20, its owner listed for January.
    const first = await services.retention.run({ now: new Date('2027-01-02T00:00:00.000Z') });
    expect(first.pruned.feed).toBe(1);
    expect((await outbox(services, 'alice')).map((e) => e.id)).toEqual([pending?.id]);
    expect(published?.id).not.toBe(pending?.id);
    // Published later: pruned by a later run (the owner stayed listed while a row was kept).
    await services.feed.drain.drain('alice');
    const second = await services.retention.run({ now: new Date('2027-02-02T00:00:00.000Z') });
    expect(second.pruned.feed).toBe(1);
    expect(await outbox(services, 'alice')).toEqual([]);
  });
});

describe('entitlement feed: a failure at any storage or queue call', () => {
  it.each(['before', 'after'] as const)(
    'each storage call of a change failing %s, then a retry',
    async (mode) => {
      expect(await crashTheChange(memoryFeedTables, mode)).toEqual([]);
    },
  );

  it('each storage call of a drain failing, then the sweep', async () => {
    expect(await crashTheDrain(memoryFeedTables)).toEqual([]);
  });

  it('a drain request lost after the commit (queue down) is published by the sweep', async () => {
    const { services, queue, transport } = world();
    await givenFourWorkflows(services);
    queue.fail(true);
    await services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    queue.fail(false);
    expect(transport.sent).toEqual([]);
    // Young listings are left to their own drain; the sweep takes them once they are old enough.
    expect((await services.feed.drain.sweep()).owners).toBe(0);
    const report = await services.feed.drain.sweep({ minAgeSeconds: 0 });
    expect(report).toMatchObject({ owners: 1, published: 1, more: false });
    expect(published(transport.sent).map((e) => e.id)).toEqual([
      `alice:${await versionOf(services, 'alice')}`,
    ]);
  });

  it('an owner that cannot be drained (a corrupt row) does not hold up the sweep of the others', async () => {
    const { services, queue, transport } = world();
    queue.fail(true);
    await givenFourWorkflows(services);
    await services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    await services.directory.putOrg('bravo', { creatorId: 'bob' });
    for (let i = 1; i <= 5; i++)
      await services.directory.putWorkflow(`wf-b${i}`, { workspace: org('bravo'), nodeCount: 1 });
    queue.fail(false);
    const [row] = await services.tables.billing.list('alice', { prefix: 'outbox|' });
    await services.tables.billing.upsert('alice', row?.rowKey ?? '', {
      event: '{not json',
      at: 'x',
      version: 1,
    });
    const report = await services.feed.drain.sweep({ minAgeSeconds: 0 });
    expect(report.failures.map((f) => f.ownerId)).toEqual(['alice']);
    expect(report.failures[0]?.error).toMatchObject({ code: 'corrupt_row' });
    expect(published(transport.sent).map((e) => e.ownerId)).toEqual(['bob']);
    // Still listed: the next run tries again once the row is repaired.
    expect((await services.tables.billing.list(FEED_PENDING_PARTITION)).map((r) => r.rowKey)).toEqual([
      'alice',
    ]);
  });

  it('duplicate drains (a redelivered message) publish the same ids again: consumers dedupe by (ownerId, version)', async () => {
    const { services, transport } = world();
    await givenFourWorkflows(services);
    await services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    await Promise.all([services.feed.drain.drain('alice'), services.feed.drain.drain('alice')]);
    const ids = published(transport.sent).map((e) => e.id);
    expect(ids.length).toBeGreaterThanOrEqual(1);
    expect(new Set(ids)).toEqual(new Set([`alice:${await versionOf(services, 'alice')}`]));
  });
});
