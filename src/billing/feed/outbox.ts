import { z } from 'zod';
import type { Catalog } from '../catalog.js';
import type { Clock } from '../clock.js';
import type { OwnerId } from '../ids.js';
import { VERSION_ROW } from '../owner/keys.js';
import { CorruptRowError, chunkedJson, readChunkedJson } from '../owner/rows.js';
import { snapshotAfter } from '../owner/snapshot.js';
import { type EntityTable, type StoredEntity, TABLE_LIMITS, type TransactionAction } from '../store.js';
import { basisOf } from './basis.js';
import { type ChangeCause, changeCauseSchema, currentCause } from './cause.js';
import { changedFields, entitlementView, entitlementViewSchema } from './view.js';

/**
 * The entitlement change feed's outbox. Rows, all in the billing table:
 * - `outbox|<version, 12 digits>` in the owner's partition: one `entitlements.changed` event, created in
 *   the SAME transaction as the change it describes (so it exists if and only if the change committed),
 *   kept after publishing for the retention window: the `changes?since=` catch-up reads them.
 * - `feed|cursor` in the owner's partition: the highest version already handed to the transport.
 * - partition `feed|pending`, row `<ownerId>`: "this owner may have unpublished rows", written BEFORE the
 *   transaction (as the retention and rollover indexes are), removed by the drain once nothing is left.
 *   The sweep reads this one partition, never the whole table.
 */

export const OUTBOX_PREFIX = 'outbox|';
export const FEED_CURSOR_ROW = 'feed|cursor';
export const FEED_PENDING_PARTITION = 'feed|pending';
export const EVENT_TYPE = 'entitlements.changed';

const VERSION_DIGITS = 12;
export const outboxRowKey = (version: number) =>
  `${OUTBOX_PREFIX}${String(version).padStart(VERSION_DIGITS, '0')}`;

/** The event, as published, stored, and answered by `GET /api/entitlements/changes`. */
export const entitlementChangeSchema = z.object({
  type: z.literal(EVENT_TYPE),
  /** `<ownerId>:<version>`: the dedupe key, also the message id on the transport and the webhook. */
  id: z.string(),
  ownerId: z.string(),
  /** The owner's snapshot version the change produced: increasing, with gaps (see README). */
  version: z.number().int().positive(),
  changed: z.array(z.string()),
  before: entitlementViewSchema,
  after: entitlementViewSchema,
  cause: changeCauseSchema,
  /** When the change was written (ISO; the transaction commits right after). */
  occurredAt: z.string(),
});
export type EntitlementChange = z.infer<typeof entitlementChangeSchema>;

export const eventId = (ownerId: OwnerId, version: number) => `${ownerId}:${version}`;

export const cursorSchema = z.object({ drained: z.number().int().nonnegative() });
export const pendingSchema = z.object({
  ownerId: z.string(),
  upto: z.number().int().positive(),
  at: z.string(),
});

/** Parses an outbox row. @throws CorruptRowError (never read as absent) */
export function parseOutboxRow(row: StoredEntity): EntitlementChange {
  let value: unknown;
  try {
    value = readChunkedJson(row.props, 'event');
  } catch (error) {
    throw new CorruptRowError(row.partitionKey, row.rowKey, `event is not JSON (${String(error)})`);
  }
  const parsed = entitlementChangeSchema.safeParse(value);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return parsed.data;
}

/** A transaction that changes entitlements left no action free for its outbox row. */
export class OutboxNoRoomError extends Error {
  readonly code = 'outbox_no_room';
  constructor(partitionKey: string, actions: number) {
    super(
      `A change to ${partitionKey} with ${actions} actions leaves no room for its entitlement outbox row; write at most ${TABLE_LIMITS.transactionActions - 1} actions per transaction`,
    );
    this.name = 'OutboxNoRoomError';
  }
}

export interface OutboxDeps {
  readonly catalog: Catalog;
  readonly clock: Clock;
  /**
   * Called once the transaction carrying an outbox row committed: queues the drain. It must not throw
   * (the change is committed whatever happens next); a lost call is recovered by the owner's next
   * change and by the sweep of `feed|pending`.
   */
  readonly committed: (ownerId: OwnerId, version: number) => Promise<void>;
  /** The cause, when not the invocation's (tests). @default currentCause */
  readonly cause?: () => ChangeCause;
}

/** What a transaction changes in the owner's entitlements, or `undefined` when it changes nothing. */
export function describeChange(
  actions: readonly TransactionAction[],
  partitionKey: string,
  deps: Pick<OutboxDeps, 'catalog' | 'clock' | 'cause'>,
): EntitlementChange | undefined {
  const bump = actions.find((a) => a.rowKey === VERSION_ROW && a.kind !== 'delete');
  const basis = bump && basisOf(bump);
  if (!bump || !basis || basis.ownerId !== partitionKey || bump.kind === 'delete') return undefined;
  const before = entitlementView(basis, deps.catalog);
  const after = entitlementView(snapshotAfter(basis, actions), deps.catalog);
  const changed = changedFields(before, after);
  if (changed.length === 0) return undefined;
  const version = basis.version.value + 1;
  return {
    type: EVENT_TYPE,
    id: eventId(basis.ownerId, version),
    ownerId: basis.ownerId,
    version,
    changed,
    before,
    after,
    cause: (deps.cause ?? currentCause)(),
    occurredAt: deps.clock.now().toISOString(),
  };
}

/**
 * The billing table, with the outbox: a transaction that bumps an owner's version (every change to the
 * snapshot does, `commit()` refuses one that does not) and changes the owner's entitlement view gets one
 * more action, the outbox row, at the end (so the caller's action indexes, which conflict handlers read,
 * stay as they were). Every writer gets it without knowing of it, the way `withRetentionIndex` lists
 * prunable rows. Writers must leave one action free (metering's batches do).
 */
export function withEntitlementOutbox(table: EntityTable, deps: OutboxDeps): EntityTable {
  return {
    ...table,
    async transact(partitionKey, actions) {
      const change = describeChange(actions, partitionKey, deps);
      if (change === undefined) return table.transact(partitionKey, actions);
      // A writer that filled the transaction would lose the event: refuse loudly, as commit() refuses a
      // change without its version (a bug in the writer, never a condition to retry).
      if (actions.length >= TABLE_LIMITS.transactionActions)
        throw new OutboxNoRoomError(partitionKey, actions.length);
      // Listed before the transaction: an outbox row never exists unlisted. A listing whose transaction
      // fails costs the drain one look.
      await table.upsert(FEED_PENDING_PARTITION, partitionKey, {
        ownerId: partitionKey,
        upto: change.version,
        at: change.occurredAt,
      });
      const result = await table.transact(partitionKey, [
        ...actions,
        {
          kind: 'create',
          rowKey: outboxRowKey(change.version),
          props: { ...chunkedJson('event', change), at: change.occurredAt, version: change.version },
        },
      ]);
      await deps.committed(partitionKey, change.version);
      return result;
    },
  };
}
