import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from './clock.js';
import { unavailable } from './errors.js';
import { type EventRef, eventRefSchema, orderingKeyOf } from './event-ref.js';
import type { EventQueue } from './queue.js';
import { readRows } from './storage/read-rows.js';
import { type EntityTable, EtagMismatchError, type StoredEntity } from './store.js';

/**
 * Events the processor gave up on, kept for an operator to list and replay once the cause is fixed (a
 * customer mapped, a price added to the catalog, an outage longer than the retry budget over).
 *
 * Layout: partition `events|poison` of the `billing` table (`|` never occurs in an owner id, so it cannot
 * meet an owner's partition). Row key = the Stripe event id, so poisoning one event twice (a host retry
 * after a crash, a replay that fails again) keeps one row with its first failure time, and a replay by id
 * is a point read. Listing is therefore in event id order, not by time. Messages that could not even be
 * read have no event id: their key is `unreadable|<time>|<uuid>` (after every `evt_` key), and they can be
 * listed but not replayed.
 */
export const POISON_PARTITION = 'events|poison';
const UNREADABLE_PREFIX = 'unreadable|';
/** A raw message is kept up to this many characters (Table Storage takes 32 Ki per string property). */
export const RAW_MAX_CHARS = 16 * 1024;
const MESSAGE_MAX_CHARS = 2 * 1024;
/** Rows one replay call sends at most, so an admin call stays well inside an HTTP timeout. */
export const REPLAY_MAX = 100;
export const LIST_MAX = 100;

/** Why the processor gave up. */
export type PoisonReason =
  /** The failure was permanent: no redelivery can help until something is fixed. */
  | 'permanent'
  /** Transient failures used up every attempt (`BILLING_EVENT_MAX_ATTEMPTS`). */
  | 'exhausted'
  /** The queue message was not a billing event at all. */
  | 'unreadable';

export interface PoisonEntry {
  /** The Stripe event id; null for an unreadable message. */
  readonly eventId: string | null;
  readonly type: string | null;
  readonly ref: EventRef | null;
  /** An unreadable message as received, cut to `RAW_MAX_CHARS`. */
  readonly raw: string | null;
  readonly reason: PoisonReason;
  /** The failure's code (`unknown_customer`, `payments_unavailable`, …; see `failures.ts`). */
  readonly code: string;
  readonly message: string;
  /** Deliveries that failed, this one included. */
  readonly attempts: number;
  readonly firstFailedAt: string;
  readonly lastFailedAt: string;
}

export type PoisonRecord =
  | {
      readonly ref: EventRef;
      readonly reason: 'permanent' | 'exhausted';
      readonly code: string;
      readonly message: string;
      readonly attempts: number;
    }
  | { readonly raw: string; readonly reason: 'unreadable'; readonly code: string; readonly message: string };

export interface PoisonPage {
  readonly items: readonly PoisonEntry[];
  /** Pass back as `cursor` for the next page; null on the last. */
  readonly nextCursor: string | null;
}

export interface ReplayReport {
  /** Event ids sent back to the queue with attempt 0, and removed from the poison store. */
  readonly replayed: readonly string[];
  /** Asked for by id but not poisoned (never, or already replayed). */
  readonly notFound: readonly string[];
  /** With `all`: whether rows are left beyond this call's bound; call again to continue. */
  readonly more: boolean;
}

export class PoisonCursorError extends Error {
  readonly code = 'invalid_cursor';
  constructor(options: { readonly cause?: unknown } = {}) {
    super('The cursor is not one this endpoint returned.', options);
    this.name = 'PoisonCursorError';
  }
}

export interface PoisonStore {
  record(entry: PoisonRecord): Promise<void>;
  list(options: { readonly limit: number; readonly cursor?: string }): Promise<PoisonPage>;
  replay(request: { readonly eventIds: readonly string[] } | { readonly all: true }): Promise<ReplayReport>;
}

const rowSchema = z.object({
  eventId: z.string(),
  type: z.string(),
  ref: z.string(),
  raw: z.string(),
  reason: z.enum(['permanent', 'exhausted', 'unreadable']),
  code: z.string(),
  message: z.string(),
  attempts: z.number().int(),
  firstFailedAt: z.string(),
  lastFailedAt: z.string(),
});

/**
 * The id a replayed message travels under: a fresh one, because Service Bus duplicate detection drops a
 * message whose id it has seen within its window (the original webhook's id is the event id).
 */
export const replayMessageId = (eventId: string, at: Date): string => `${eventId}~replay~${at.getTime()}`;

export function createPoisonStore(deps: {
  readonly table: EntityTable;
  readonly queue: EventQueue;
  readonly clock: Clock;
}): PoisonStore {
  const { table, queue, clock } = deps;

  const entryOf = (row: StoredEntity): PoisonEntry => {
    const props = rowSchema.parse(row.props);
    const ref = props.ref === '' ? null : eventRefSchema.parse(JSON.parse(props.ref));
    return {
      eventId: props.eventId === '' ? null : props.eventId,
      type: props.type === '' ? null : props.type,
      ref,
      raw: props.raw === '' ? null : props.raw,
      reason: props.reason,
      code: props.code,
      message: props.message,
      attempts: props.attempts,
      firstFailedAt: props.firstFailedAt,
      lastFailedAt: props.lastFailedAt,
    };
  };

  const replayOne = async (row: StoredEntity): Promise<boolean> => {
    const entry = entryOf(row);
    if (entry.ref === null) return false;
    const ref: EventRef = { ...entry.ref, attempt: 0 };
    try {
      await queue.send({
        id: replayMessageId(ref.eventId, clock.now()),
        orderingKey: orderingKeyOf(ref),
        body: ref,
      });
    } catch (error) {
      throw unavailable(
        'queue_unavailable',
        `Event ${ref.eventId} could not be put back on the queue. Events replayed before it are no longer listed; it and the rest still are. Retry the same request.`,
        5,
        error,
      );
    }
    // Only after the send: a failed send leaves the row for the next replay. The ETag condition keeps a
    // row the replayed event already re-poisoned (it failed again before we got here).
    try {
      await table.delete(POISON_PARTITION, row.rowKey, row.etag);
    } catch (error) {
      if (!(error instanceof EtagMismatchError)) throw error;
    }
    return true;
  };

  return {
    async record(entry) {
      const now = clock.now().toISOString();
      const rowKey = 'ref' in entry ? entry.ref.eventId : `${UNREADABLE_PREFIX}${now}|${randomUUID()}`;
      const existing = 'ref' in entry ? await table.get(POISON_PARTITION, rowKey) : undefined;
      const first = existing ? rowSchema.safeParse(existing.props) : undefined;
      await table.upsert(POISON_PARTITION, rowKey, {
        eventId: 'ref' in entry ? entry.ref.eventId : '',
        type: 'ref' in entry ? entry.ref.type : '',
        ref: 'ref' in entry ? JSON.stringify(entry.ref) : '',
        raw: 'raw' in entry ? entry.raw.slice(0, RAW_MAX_CHARS) : '',
        reason: entry.reason,
        code: entry.code,
        message: entry.message.slice(0, MESSAGE_MAX_CHARS),
        attempts: 'attempts' in entry ? entry.attempts : 1,
        firstFailedAt: first?.success ? first.data.firstFailedAt : now,
        lastFailedAt: now,
      });
    },

    async list({ limit, cursor }) {
      const after = cursor === undefined ? undefined : decodeCursor(cursor);
      // One row beyond the page says whether another follows; never the whole partition.
      const pageSize = Math.min(limit, LIST_MAX);
      const rows = await readRows(table, POISON_PARTITION, { after }, pageSize + 1);
      const page = rows.slice(0, pageSize);
      const last = page.at(-1);
      return {
        items: page.map(entryOf),
        nextCursor: rows.length > page.length && last ? encodeCursor(last.rowKey) : null,
      };
    },

    async replay(request) {
      const replayed: string[] = [];
      const notFound: string[] = [];
      let more = false;
      // One at a time, in key order: when the queue fails midway, what was sent is gone from the store
      // and the rest is still listed, so the same call again continues where this one stopped.
      if ('all' in request) {
        // Event rows only: unreadable messages (keyed after every event id) cannot be replayed.
        const rows = await readRows(
          table,
          POISON_PARTITION,
          { range: { from: '', to: UNREADABLE_PREFIX } },
          REPLAY_MAX + 1,
        );
        more = rows.length > REPLAY_MAX;
        for (const row of rows.slice(0, REPLAY_MAX)) {
          if (await replayOne(row)) replayed.push(row.rowKey);
        }
      } else {
        for (const eventId of new Set(request.eventIds)) {
          const row = await table.get(POISON_PARTITION, eventId);
          if (row && (await replayOne(row))) replayed.push(eventId);
          else notFound.push(eventId);
        }
      }
      return { replayed, notFound, more };
    },
  };
}

const encodeCursor = (rowKey: string): string => Buffer.from(rowKey, 'utf8').toString('base64url');

function decodeCursor(cursor: string): string {
  const rowKey = Buffer.from(cursor, 'base64url').toString('utf8');
  // base64url decoding never throws: a cursor is only accepted if it round-trips.
  if (rowKey === '' || encodeCursor(rowKey) !== cursor) throw new PoisonCursorError();
  return rowKey;
}
