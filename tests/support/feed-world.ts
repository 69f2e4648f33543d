import { expect } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
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
import { baseTestEnv } from './env.js';
import { manualClock } from './memory.js';
import { type FailureMode, faultyTables, InjectedFailure } from './tables.js';

/**
 * The entitlement feed's worlds and crash runs, shared by the unit tests (in-memory twin) and the
 * integration tests (Azurite).
 */

export type Tables = { readonly directory: EntityTable; readonly billing: EntityTable };

export const memoryFeedTables = (): Tables => ({
  directory: createMemoryTable('directory'),
  billing: createMemoryTable('billing'),
});

/** A queue that records what it was given, and fails the sends it is told to. */
export function recordingQueue(name: string) {
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

export function world(tables: Tables = memoryFeedTables()) {
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

export const org = (orgId: OrgId) => ({ kind: 'org' as const, orgId });

export async function outbox(services: Services, ownerId: string): Promise<EntitlementChange[]> {
  const rows = await services.tables.billing.list(ownerId, { prefix: OUTBOX_PREFIX });
  return rows.map(parseOutboxRow);
}

export async function versionOf(services: Services, ownerId: string): Promise<number> {
  const row = await services.tables.billing.get(ownerId, VERSION_ROW);
  return typeof row?.props.version === 'number' ? row.props.version : 0;
}

/** Published events, parsed, as (ownerId, version) pairs in order of publication. */
export const published = (sent: readonly QueueMessage[]) =>
  sent.map((m) => {
    const event = entitlementChangeSchema.parse(m.body);
    expect(m.id).toBe(`${event.ownerId}:${event.version}`);
    return event;
  });

/** Free plan: 5 workflows per organization. The 5th exhausts it. */
export async function givenFourWorkflows(services: Services) {
  await services.directory.putOrg('acme', { creatorId: 'alice', name: 'Acme' });
  for (let i = 1; i <= 4; i++)
    await services.directory.putWorkflow(`wf-${i}`, { workspace: org('acme'), nodeCount: 1 });
}

/**
 * The 5th workflow PUT (a change that exhausts `workflows_per_org`), with each storage call failing in
 * turn in `mode` (before it reaches storage, or after it took effect with its answer lost), then the same
 * PUT again by a new process, then the queued drains, then the sweep. Answers the problems found: exactly
 * one event for the change must be published, at the version it produced, and the pending listing gone.
 */
export async function crashTheChange(makeTables: () => Tables, mode: FailureMode): Promise<string[]> {
  const reference = world(makeTables());
  await givenFourWorkflows(reference.services);
  const counting = faultyTables(reference.tables);
  const countingWorld = world(counting.tables);
  counting.faults.failCall(0, 'before');
  await countingWorld.services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
  const calls = counting.faults.calls;
  expect(calls).toBeGreaterThan(3);

  const problems: string[] = [];
  for (let call = 1; call <= calls; call++) {
    const base = world(makeTables());
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
  return problems;
}

/**
 * Two committed events; a drain with each of its storage calls failing in turn (both modes), then the
 * sweep: every event published at least once, in version order, and the pending listing gone.
 */
export async function crashTheDrain(makeTables: () => Tables): Promise<string[]> {
  const given = async () => {
    const w = world(makeTables());
    await givenFourWorkflows(w.services);
    await w.services.directory.putWorkflow('wf-5', { workspace: org('acme'), nodeCount: 1 });
    await w.services.directory.deleteWorkflow('wf-5');
    return w;
  };
  const base = await given();
  const expected = (await outbox(base.services, 'alice')).map((e) => e.id);
  const counting = faultyTables(base.tables);
  counting.faults.failCall(0, 'before');
  await world(counting.tables).services.feed.drain.drain('alice');
  const calls = counting.faults.calls;
  const problems: string[] = [];
  for (const mode of ['before', 'after'] as const)
    for (let call = 1; call <= calls; call++) {
      const fresh = await given();
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
  return problems;
}
