import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import type { Clock } from '../../src/billing/clock.js';
import { drainMessageSchema, webhookMessageSchema } from '../../src/billing/feed/messages.js';
import { SUBSCRIPTION_ROW } from '../../src/billing/owner/keys.js';
import { withVersion } from '../../src/billing/owner/snapshot.js';
import type { EventQueue } from '../../src/billing/queue.js';
import { seatSyncMessageSchema } from '../../src/billing/seat-sync-message.js';
import { commit, write } from '../../src/billing/storage/commit.js';
import type { EntityProps } from '../../src/billing/store.js';
import type { SubscriptionState } from '../../src/billing/subscription.js';
import { createServices, type Services } from '../../src/composition.js';
import { loadConfig } from '../../src/config.js';
import { baseTestEnv } from './env.js';

/** A clock tests can move. */
export function manualClock(start = '2026-11-15T12:00:00.000Z'): Clock & { set(iso: string): void } {
  let now = new Date(start);
  return { now: () => new Date(now), set: (iso) => (now = new Date(iso)) };
}

/** Seat sync requests follow every new person; these tests run the sync themselves when they need it. */
export const isSeatSyncRequest = (body: unknown) => seatSyncMessageSchema.safeParse(body).success;

/** Entitlement feed drains follow every change that moves an owner's entitlements; unit tests drain themselves. */
export const isFeedRequest = (body: unknown) =>
  drainMessageSchema.safeParse(body).success || webhookMessageSchema.safeParse(body).success;

const unusedQueue: EventQueue = {
  name: 'unused',
  send: async (message) => {
    if (isSeatSyncRequest(message.body) || isFeedRequest(message.body)) return;
    throw new Error('no queue in unit tests');
  },
  ping: async () => undefined,
};

/** The real domain wiring over in-memory tables: fast, and held to the same contract as Azurite. */
export function memoryServices(env: Record<string, string> = {}, clock: Clock = manualClock()): Services {
  const config = loadConfig({
    BILLING_STORAGE_CONNECTION: 'UseDevelopmentStorage=true',
    ...baseTestEnv,
    ...env,
  });
  return createServices(config, {
    clock,
    tables: { directory: createMemoryTable('directory'), billing: createMemoryTable('billing') },
    queue: unusedQueue,
  });
}

/**
 * Writes rows of an owner's snapshot directly (a subscription state, a counter), as an operator's repair
 * would: with the snapshot's version bumped in the same transaction, as every change to the snapshot
 * must, so that processes keeping the snapshot see it.
 */
export async function givenOwnerRows(
  services: Services,
  ownerId: string,
  rows: Readonly<Record<string, EntityProps>>,
): Promise<void> {
  await commit(
    services.tables.billing,
    ownerId,
    async () => {
      const snapshot = await services.owners.read(ownerId);
      return write(
        withVersion(
          snapshot,
          Object.entries(rows).map(([rowKey, props]) => ({ kind: 'upsert' as const, rowKey, props })),
        ),
        () => undefined,
      );
    },
    { what: `writing rows of ${ownerId}` },
  );
}

/** Places a subscription state directly (tests of access levels), in the row format the processor writes. */
export async function givenSubscription(
  services: Services,
  ownerId: string,
  state: Partial<SubscriptionState> & Pick<SubscriptionState, 'plan' | 'status'>,
): Promise<void> {
  const row: SubscriptionState = {
    interval: 'monthly',
    seats: 1,
    currentPeriodStart: '2026-11-01T00:00:00.000Z',
    currentPeriodEnd: '2026-12-01T00:00:00.000Z',
    cancelAtPeriodEnd: false,
    updatedAt: '2026-11-01T00:00:00.000Z',
    ...state,
  };
  await givenOwnerRows(services, ownerId, { [SUBSCRIPTION_ROW]: row });
}
