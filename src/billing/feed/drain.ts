import type { Clock } from '../clock.js';
import type { OwnerId } from '../ids.js';
import { VERSION_ROW } from '../owner/keys.js';
import { parseRow, versionSchema } from '../owner/rows.js';
import type { EventQueue } from '../queue.js';
import { answer, commit, write } from '../storage/commit.js';
import { type EntityTable, EtagMismatchError, prefixEnd } from '../store.js';
import { requestDrain, requestWebhook } from './messages.js';
import {
  cursorSchema,
  type EntitlementChange,
  FEED_CURSOR_ROW,
  FEED_PENDING_PARTITION,
  OUTBOX_PREFIX,
  outboxRowKey,
  parseOutboxRow,
  pendingSchema,
} from './outbox.js';

/**
 * Publishes outbox rows: the queue processor runs `drain` for an owner when a change asks (after its
 * commit), and the `entitlementFeedSweep` timer runs `sweep` for owners whose drain was never asked
 * (a crash between commit and enqueue) or failed.
 *
 * At least once: rows after the owner's cursor are sent in version order, then the cursor moves. A crash
 * in between sends them again; consumers deduplicate by `(ownerId, version)` (the message id, the
 * webhook's event id header). Never lost: the cursor only moves past rows that were sent, and the
 * owner's `feed|pending` listing goes only once the cursor is past every version that could still hold a
 * row (see `drain`).
 */
export interface FeedDrain {
  drain(ownerId: OwnerId): Promise<DrainReport>;
  /** Drains owners listed in `feed|pending` whose listing is older than `minAgeSeconds`. */
  sweep(options?: SweepOptions): Promise<SweepReport>;
}

export interface DrainReport {
  readonly ownerId: OwnerId;
  /** Events handed to the transport in this drain (in version order). */
  readonly published: readonly number[];
  /** The `feed|pending` listing was removed (nothing left to publish). */
  readonly settled: boolean;
}

export interface SweepOptions {
  /** Owners one run drains at most; the next run continues. @default 200 */
  readonly maxOwners?: number;
  /** Leave listings younger than this to the drain their change queued. @default 60 */
  readonly minAgeSeconds?: number;
}

export interface SweepReport {
  readonly owners: number;
  readonly published: number;
  /** More listings were left for the next run. */
  readonly more: boolean;
  /** Owners whose drain failed; they stay listed for the next run. */
  readonly failures: ReadonlyArray<{ readonly ownerId: string; readonly error: unknown }>;
}

export interface FeedDrainDeps {
  /** The billing table WITHOUT the outbox decorator is fine too: the drain writes no snapshot row. */
  readonly table: EntityTable;
  /** Where events are published: a Storage Queue or a Service Bus topic. */
  readonly transport: EventQueue;
  /** The billing queue: webhook deliveries are queued here, one message per event. */
  readonly queue: EventQueue;
  /** Queue a webhook delivery per event. */
  readonly webhook: boolean;
  readonly clock: Clock;
}

/** Rows read per page while draining one owner. */
const PAGE = 100;
/**
 * A listing whose version was never written (its transaction failed, and nobody changed the owner since)
 * is dropped once it is this old: no transaction is in flight for minutes (storage calls time out first).
 */
const ABANDONED_LISTING_MS = 10 * 60_000;

export function createFeedDrain(deps: FeedDrainDeps): FeedDrain {
  const { table, transport, queue, clock } = deps;

  async function publish(event: EntitlementChange): Promise<void> {
    await transport.send({ id: event.id, body: event });
    if (deps.webhook)
      await requestWebhook(queue, { ownerId: event.ownerId, version: event.version, attempt: 0 });
  }

  async function moveCursor(ownerId: OwnerId, to: number): Promise<void> {
    await commit(
      table,
      ownerId,
      async () => {
        const row = await table.get(ownerId, FEED_CURSOR_ROW);
        const drained = row ? parseRow(cursorSchema, row).drained : 0;
        // Another drain went further: the cursor never moves back.
        if (drained >= to) return answer(undefined);
        const props = { drained: to, updatedAt: clock.now().toISOString() };
        return write(
          [
            row
              ? { kind: 'update', rowKey: FEED_CURSOR_ROW, props, etag: row.etag }
              : { kind: 'create', rowKey: FEED_CURSOR_ROW, props },
          ],
          () => undefined,
        );
      },
      { what: `moving the entitlement feed cursor of ${ownerId}` },
    );
  }

  async function drain(ownerId: OwnerId): Promise<DrainReport> {
    // Order matters: the listing, then the version, then the rows. Every transaction that could write a
    // row up to the version read has committed by then (the version row is in it), so its row is listed.
    const listing = await table.get(FEED_PENDING_PARTITION, ownerId);
    const versionRow = await table.get(ownerId, VERSION_ROW);
    const current = versionRow ? parseRow(versionSchema, versionRow).version : 0;
    const cursorRow = await table.get(ownerId, FEED_CURSOR_ROW);
    let drained = cursorRow ? parseRow(cursorSchema, cursorRow).drained : 0;
    const published: number[] = [];
    let cursor: string | undefined;
    do {
      const page = await table.listPage(ownerId, {
        range: { from: outboxRowKey(drained + 1), to: prefixEnd(OUTBOX_PREFIX) },
        top: PAGE,
        ...(cursor === undefined ? {} : { cursor }),
      });
      for (const row of page.rows) {
        const event = parseOutboxRow(row);
        await publish(event);
        published.push(event.version);
      }
      const last = published.at(-1);
      if (last !== undefined && last > drained) {
        await moveCursor(ownerId, last);
        drained = last;
      }
      cursor = page.nextCursor;
    } while (cursor !== undefined);

    let settled = false;
    if (listing) {
      const { upto, at } = parseRow(pendingSchema, listing);
      const abandoned = clock.now().getTime() - Date.parse(at) > ABANDONED_LISTING_MS;
      if (current >= upto || abandoned) {
        // On its ETag: a change listed meanwhile keeps its listing for its own drain (or the sweep).
        try {
          await table.delete(FEED_PENDING_PARTITION, ownerId, listing.etag);
          settled = true;
        } catch (error) {
          if (!(error instanceof EtagMismatchError)) throw error;
        }
      }
    } else settled = true;
    return { ownerId, published, settled };
  }

  return {
    drain,
    async sweep(options = {}) {
      const maxOwners = options.maxOwners ?? 200;
      const minAgeMs = (options.minAgeSeconds ?? 60) * 1000;
      const now = clock.now().getTime();
      // One partition, one bounded page: never a scan of the table.
      const page = await table.listPage(FEED_PENDING_PARTITION, { top: maxOwners });
      let owners = 0;
      let count = 0;
      const failures: Array<{ readonly ownerId: string; readonly error: unknown }> = [];
      for (const row of page.rows) {
        // One owner that cannot be drained (a corrupt row, an outage of its partition) does not hold up
        // the others: it stays listed, and is tried again next run.
        try {
          const { ownerId, at } = parseRow(pendingSchema, row);
          if (now - Date.parse(at) < minAgeMs) continue;
          const report = await drain(ownerId);
          owners++;
          count += report.published.length;
        } catch (error) {
          failures.push({ ownerId: row.rowKey, error });
        }
      }
      return { owners, published: count, more: page.nextCursor !== undefined, failures };
    },
  };
}

/**
 * Queues the drain of an owner after a commit, without holding the change: its caller does not wait for
 * the send (the change is committed already, and a queue that is slow or down, whose client retries until
 * the storage timeout, must not hold every change that moves entitlements). Never throws: a send that
 * fails, or never happens because the process dies, leaves the owner listed in `feed|pending`, and the
 * owner's next drain or the sweep publishes.
 *
 * Coalesced per owner: a drain publishes every row after the cursor, so one request per burst is enough.
 * The first change of an owner sends at once; changes within the next `windowMs` send one more request
 * when the window closes. (Measured in `npm run bench`: one send per change cost half the throughput of
 * a burst of changes on the shared Azurite.)
 */
export function drainRequester(
  queue: EventQueue,
  warn: (message: string, error: unknown) => void,
  options: { readonly windowMs?: number } = {},
): (ownerId: OwnerId, version: number) => Promise<void> {
  const windowMs = options.windowMs ?? 1_000;
  /** Owners with an open window, and whether a change came during it. */
  const windows = new Map<OwnerId, { trailing: number | undefined }>();
  const send = (ownerId: OwnerId, version: number) => {
    void requestDrain(queue, ownerId, `v${version}`).catch((error: unknown) =>
      warn(
        `entitlement feed drain of ${ownerId} (version ${version}) not queued; the sweep will publish it`,
        error,
      ),
    );
    const window: { trailing: number | undefined } = { trailing: undefined };
    windows.set(ownerId, window);
    setTimeout(() => {
      windows.delete(ownerId);
      if (window.trailing !== undefined) send(ownerId, window.trailing);
    }, windowMs).unref();
  };
  return async (ownerId, version) => {
    const open = windows.get(ownerId);
    if (open) open.trailing = Math.max(open.trailing ?? 0, version);
    else send(ownerId, version);
  };
}
