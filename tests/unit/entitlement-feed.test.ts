import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { withCause } from '../../src/billing/feed/cause.js';
import { drainMessageSchema } from '../../src/billing/feed/messages.js';
import {
  type EntitlementChange,
  entitlementChangeSchema,
  FEED_PENDING_PARTITION,
  OUTBOX_PREFIX,
  parseOutboxRow,
} from '../../src/billing/feed/outbox.js';
import type { OrgId } from '../../src/billing/ids.js';
import { VERSION_ROW } from '../../src/billing/owner/keys.js';
import type { EventQueue, QueueMessage } from '../../src/billing/queue.js';
import type { EntityTable } from '../../src/billing/store.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from '../support/env.js';
import { manualClock } from '../support/memory.js';
import { type FailureMode, faultyTables, InjectedFailure } from '../support/tables.js';

/**
 * The entitlement feed on the in-memory twin: one outbox row per change that moves what the owner is
 * entitled to, in the change's own transaction; none for a change that moves nothing; published at least
 * once whatever storage or queue call fails, and never for a change that did not commit.
 */

type Tables = { readonly directory: EntityTable; readonly billing: EntityTable };

/** A queue that records what it was given, and fails the sends it is told to. */
function recordingQueue(name: string) {
  const sent: QueueMessage[] = [];
  let failing = false;
  const queue: EventQueue = {
    name,
    async send(message) {
      if (failing) throw new Error(`${name} is down`);
      sent.push(message);
    },
    ping: async () => undefined,
  };
  return {
    queue,
    sent,
    fail(on: boolean) {
      failing = on;
    },
  };
}

function world(
  tables: Tables = { directory: createMemoryTable('directory'), billing: createMemoryTable('billing') },
) {
  const queue = recordingQueue('billing-events');
  const transport = recordingQueue('entitlement-changes');
  const services = createServices(
    loadConfig({ BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true', ...baseTestEnv }),
    {
      clock: manualClock(),
      tables,
      queue: queue.queue,
      feedTransport: transport.queue,
    },
  );
  return { services, queue, transport, tables };
}

const org = (orgId: OrgId) => ({ kind: 'org' as const, orgId });

async function outbox(services: Services, ownerId: string): Promise<EntitlementChange[]> {
  const rows = await services.tables.billing.list(ownerId, { prefix: OUTBOX_PREFIX });
  return rows.map(parseOutboxRow);
}

async function versionOf(services: Services, ownerId: string): Promise<number> {
  const row = await services.tables.billing.get(ownerId, VERSION_ROW);
  return typeof row?.props.version === 'number' ? row.props.version : 0;
}

/** Published events, parsed, as (ownerId, version) pairs in order of publication. */
const published = (sent: readonly QueueMessage[]) =>
  sent.map((m) => {
    const event = entitlementChangeSchema.parse(m.body);
    expect(m.id).toBe(`${event.ownerId}:${event.version}`);
    return event;
  });

/** Free plan: 5 workflows per organization. The 5th exhausts it. */
async function givenFourWorkflows(services: Services) {
  await services.directory.putOrg('acme', { creatorId: 'alice', name: 'Acme' });
  for (let i = 1; i <= 4; i++)
    await services.directory.putWorkflow(`wf-${i}`, { workspace: org('acme'), nodeCount: 1 });
}

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

describe('entitlement feed: a failure at any storage or queue call', () => {
  /**
   * The 5th workflow PUT (a change that exhausts `workflows_per_org`), with each storage call failing in
   * turn (before it reaches storage, or after it took effect with its answer lost), then the same PUT
   * again by a new process, then the queued drains, then the sweep. Exactly one event for the change,
   * published, and the pending listing gone; and none when the change never committed.
   */
  it.each(['before', 'after'] as const)('storage calls failing %s', async (mode: FailureMode) => {
    const reference = world();
    await givenFourWorkflows(reference.services);
    const counting = faultyTables(reference.tables);
    const countingWorld = world(counting.tables);
    counting.faults.failCall(0, 'before');
    await countingWorld.services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    const calls = counting.faults.calls;
    expect(calls).toBeGreaterThan(3);

    const problems: string[] = [];
    for (let call = 1; call <= calls; call++) {
      const base = world();
      await givenFourWorkflows(base.services);
      const faulty = faultyTables(base.tables);
      const crashing = world(faulty.tables);
      faulty.faults.failCall(call, mode);
      const outcome = await crashing.services.directory
        .putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 })
        .then(
          () => 'completed',
          (error: unknown) => (error instanceof InjectedFailure || error instanceof Error ? 'failed' : 'odd'),
        );
      if (outcome !== 'failed') problems.push(`call ${call}: completed although it failed`);
      // A new process retries the request, drains what was asked, then the sweep runs.
      const healthy = world(base.tables);
      await healthy.services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
      for (const message of [...crashing.queue.sent, ...healthy.queue.sent]) {
        const drain = drainMessageSchema.safeParse(message.body);
        if (drain.success) await healthy.services.feed.drain.drain(drain.data.ownerId);
      }
      await healthy.services.feed.drain.sweep({ minAgeSeconds: 0 });
      const rows = await outbox(healthy.services, 'alice');
      const version = await versionOf(healthy.services, 'alice');
      if (rows.length !== 1) problems.push(`call ${call}: ${rows.length} outbox rows`);
      else if (rows[0]?.version !== version)
        problems.push(`call ${call}: row v${rows[0]?.version} at v${version}`);
      const sent = published([...crashing.transport.sent, ...healthy.transport.sent]);
      const distinct = new Set(sent.map((e) => e.id));
      if (distinct.size !== 1 || !distinct.has(`alice:${version}`))
        problems.push(`call ${call}: published ${[...distinct].join(', ') || 'nothing'}`);
      if ((await base.tables.billing.list(FEED_PENDING_PARTITION)).length !== 0)
        problems.push(`call ${call}: pending listing left`);
    }
    expect(problems).toEqual([]);
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

  it('each failing drain call, then a retry: every event published at least once, in order', async () => {
    const base = world();
    await givenFourWorkflows(base.services);
    await base.services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    await base.services.directory.deleteWorkflow('wf-5');
    const expected = (await outbox(base.services, 'alice')).map((e) => e.id);
    const counting = faultyTables(base.tables);
    counting.faults.failCall(0, 'before');
    // Count on a copy of the state: a drain that finishes moves the cursor.
    const probe = world(counting.tables);
    await probe.services.feed.drain.drain('alice');
    const calls = counting.faults.calls;
    const problems: string[] = [];
    for (const mode of ['before', 'after'] as const)
      for (let call = 1; call <= calls; call++) {
        const fresh = world();
        await givenFourWorkflows(fresh.services);
        await fresh.services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
        await fresh.services.directory.deleteWorkflow('wf-5');
        const faulty = faultyTables(fresh.tables);
        const crashing = world(faulty.tables);
        faulty.faults.failCall(call, mode);
        await crashing.services.feed.drain.drain('alice').catch(() => undefined);
        const healthy = world(fresh.tables);
        await healthy.services.feed.drain.sweep({ minAgeSeconds: 0 });
        const ids = [
          ...new Set(published([...crashing.transport.sent, ...healthy.transport.sent]).map((e) => e.id)),
        ];
        if (JSON.stringify(ids) !== JSON.stringify(expected))
          problems.push(`${mode} ${call}: ${ids.join(', ')} instead of ${expected.join(', ')}`);
        if ((await fresh.tables.billing.list(FEED_PENDING_PARTITION)).length !== 0)
          problems.push(`${mode} ${call}: pending listing left`);
      }
    expect(problems).toEqual([]);
  });
});
