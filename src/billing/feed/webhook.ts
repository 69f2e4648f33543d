import { createHmac } from 'node:crypto';
import { z } from 'zod';
import type { Clock } from '../clock.js';
import { type BackoffSettings, describeFailure, redeliveryDelaySeconds } from '../failures.js';
import type { OwnerId } from '../ids.js';
import { parseRow } from '../owner/rows.js';
import type { EventQueue } from '../queue.js';
import type { EntityTable, StoredEntity } from '../store.js';
import { requestWebhook, type WebhookMessage } from './messages.js';
import { outboxRowKey, parseOutboxRow } from './outbox.js';

/**
 * Signed HTTP deliveries of `entitlements.changed` to the platform, one queued message per event.
 *
 * Signature: header `Entitlements-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>` over
 * `<t>.<raw body>` with the shared secret (the scheme Stripe uses, so the same verification habits
 * apply: compare in constant time, refuse an old `t`). `Entitlements-Event-Id: <ownerId>:<version>` is
 * the dedupe key. A 2xx answer is delivered; anything else, or no answer within the timeout, is retried
 * by queueing the message again with a growing delay; after the last attempt the delivery is recorded as
 * failed (partition `feed|failed`, row `<ownerId>|<version>`) for an operator to list and replay.
 */
export const SIGNATURE_HEADER = 'entitlements-signature';
export const EVENT_ID_HEADER = 'entitlements-event-id';

export function signatureHeader(secret: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex');
  return `t=${timestamp},v1=${mac}`;
}

export interface WebhookSettings {
  readonly url: URL;
  readonly secret: string;
  readonly maxAttempts: number;
  readonly retry: BackoffSettings;
  /** One POST may take this long. @default 10000 */
  readonly timeoutMs?: number;
}

export const FAILED_PARTITION = 'feed|failed';
const failedRowKey = (ownerId: OwnerId, version: number) => `${ownerId}|${outboxRowKey(version)}`;

const failedRowSchema = z.object({
  ownerId: z.string(),
  version: z.number().int().positive(),
  attempts: z.number().int().positive(),
  /** The last HTTP status, 0 when no answer came. */
  lastStatus: z.number().int(),
  lastError: z.string(),
  failedAt: z.string(),
});

export interface FailedDelivery {
  readonly id: string;
  readonly ownerId: string;
  readonly version: number;
  readonly attempts: number;
  readonly lastStatus: number;
  readonly lastError: string;
  readonly failedAt: string;
}

export type DeliveryOutcome =
  | { readonly kind: 'delivered'; readonly status: number }
  | { readonly kind: 'retrying'; readonly status: number; readonly delaySeconds: number }
  | { readonly kind: 'failed'; readonly status: number }
  /** The event's row is gone (pruned after the retention window): nothing to send. */
  | { readonly kind: 'missing' };

export interface FeedWebhooks {
  deliver(message: WebhookMessage): Promise<DeliveryOutcome>;
  listFailed(options: { readonly limit: number; readonly cursor?: string }): Promise<{
    readonly items: readonly FailedDelivery[];
    readonly nextCursor: string | null;
  }>;
  /** Queues the deliveries again (attempt 0), removing each record after its message was queued. */
  replay(ids: readonly string[] | 'all'): Promise<{
    readonly replayed: readonly string[];
    readonly notFound: readonly string[];
    readonly more: boolean;
  }>;
}

export const REPLAY_MAX = 100;

export function createFeedWebhooks(deps: {
  readonly table: EntityTable;
  readonly queue: EventQueue;
  readonly clock: Clock;
  readonly settings: WebhookSettings;
  /** @default globalThis.fetch */
  readonly fetch?: typeof fetch;
}): FeedWebhooks {
  const { table, queue, clock, settings } = deps;
  const send = deps.fetch ?? fetch;

  async function post(body: string, eventId: string): Promise<{ status: number; error: string }> {
    const timestamp = Math.floor(clock.now().getTime() / 1000);
    try {
      const response = await send(settings.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          [SIGNATURE_HEADER]: signatureHeader(settings.secret, timestamp, body),
          [EVENT_ID_HEADER]: eventId,
        },
        body,
        signal: AbortSignal.timeout(settings.timeoutMs ?? 10_000),
      });
      // The body is not needed; read it so the connection is released.
      await response.arrayBuffer().catch(() => undefined);
      return { status: response.status, error: response.ok ? '' : `HTTP ${response.status}` };
    } catch (error) {
      return { status: 0, error: describeFailure(error).code };
    }
  }

  const entryOf = (row: StoredEntity): FailedDelivery => {
    const props = parseRow(failedRowSchema, row);
    return { id: `${props.ownerId}:${props.version}`, ...props };
  };

  return {
    async deliver(message) {
      const row = await table.get(message.ownerId, outboxRowKey(message.version));
      if (!row) return { kind: 'missing' };
      const event = parseOutboxRow(row);
      const { status, error } = await post(JSON.stringify(event), event.id);
      if (status >= 200 && status < 300) return { kind: 'delivered', status };
      const attempts = message.attempt + 1;
      if (attempts < settings.maxAttempts) {
        const delaySeconds = redeliveryDelaySeconds(attempts, settings.retry);
        await requestWebhook(queue, { ...message, attempt: attempts }, delaySeconds);
        return { kind: 'retrying', status, delaySeconds };
      }
      await table.upsert(FAILED_PARTITION, failedRowKey(message.ownerId, message.version), {
        ownerId: message.ownerId,
        version: message.version,
        attempts,
        lastStatus: status,
        lastError: error,
        failedAt: clock.now().toISOString(),
      });
      return { kind: 'failed', status };
    },

    async listFailed({ limit, cursor }) {
      const page = await table.listPage(FAILED_PARTITION, {
        top: limit,
        ...(cursor === undefined ? {} : { after: cursor }),
      });
      const items = page.rows.map(entryOf);
      const last = page.rows.at(-1);
      return { items, nextCursor: page.rows.length === limit && last ? last.rowKey : null };
    },

    async replay(ids) {
      const rows: StoredEntity[] = [];
      const notFound: string[] = [];
      let more = false;
      if (ids === 'all') {
        const page = await table.listPage(FAILED_PARTITION, { top: REPLAY_MAX });
        rows.push(...page.rows);
        more = page.nextCursor !== undefined || page.rows.length === REPLAY_MAX;
      } else {
        for (const id of ids) {
          const at = id.lastIndexOf(':');
          const version = Number(id.slice(at + 1));
          const row =
            at > 0 && Number.isInteger(version) && version > 0
              ? await table.get(FAILED_PARTITION, failedRowKey(id.slice(0, at), version))
              : undefined;
          if (row) rows.push(row);
          else notFound.push(id);
        }
      }
      const replayed: string[] = [];
      for (const row of rows) {
        const entry = entryOf(row);
        // A fresh message id: Service Bus drops an id it has seen within its duplicate-detection window.
        await requestWebhook(
          queue,
          { ownerId: entry.ownerId, version: entry.version, attempt: 0 },
          0,
          `replay-${clock.now().getTime()}`,
        );
        await table.delete(FAILED_PARTITION, row.rowKey, row.etag);
        replayed.push(entry.id);
      }
      return { replayed, notFound, more };
    },
  };
}
