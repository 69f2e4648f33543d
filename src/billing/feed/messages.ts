import { z } from 'zod';
import { idSchema, type OwnerId } from '../ids.js';
import type { EventQueue } from '../queue.js';

/**
 * The entitlement feed's messages on the billing queue, beside Stripe event references and seat syncs
 * (`seat-sync-message.ts`): the processor recognises each by its `kind`.
 * - `entitlements_drain`: publish an owner's unpublished outbox rows. Sent after the change commits; the
 *   message id names the version whose commit asked, so a duplicate send is dropped by Service Bus and
 *   a duplicate delivery only publishes again what consumers deduplicate by `(ownerId, version)`.
 * - `entitlements_webhook`: one signed delivery of one event to the platform, with its attempt count
 *   (a failed delivery comes back later as a new message, like the processor's own transient retries).
 */
export const drainMessageSchema = z.strictObject({
  kind: z.literal('entitlements_drain'),
  v: z.literal(1),
  ownerId: idSchema,
  /** Transient failures so far. */
  attempt: z.number().int().min(0).default(0),
});
export type DrainMessage = z.infer<typeof drainMessageSchema>;

export const webhookMessageSchema = z.strictObject({
  kind: z.literal('entitlements_webhook'),
  v: z.literal(1),
  ownerId: idSchema,
  version: z.number().int().positive(),
  /** Deliveries that failed so far. */
  attempt: z.number().int().min(0).default(0),
});
export type WebhookMessage = z.infer<typeof webhookMessageSchema>;

/** One owner's feed messages are ordered among themselves, apart from its Stripe events. */
export const feedOrderingKey = (ownerId: OwnerId) => `feed:${ownerId}`;

export function requestDrain(
  queue: EventQueue,
  ownerId: OwnerId,
  reason: string,
  options: { readonly attempt?: number; readonly delaySeconds?: number } = {},
): Promise<void> {
  const attempt = options.attempt ?? 0;
  const body: DrainMessage = { kind: 'entitlements_drain', v: 1, ownerId, attempt };
  return queue.send(
    { id: `feed-drain-${ownerId}-${reason}-${attempt}`, orderingKey: feedOrderingKey(ownerId), body },
    { delaySeconds: options.delaySeconds ?? 0 },
  );
}

export function requestWebhook(
  queue: EventQueue,
  message: Omit<WebhookMessage, 'kind' | 'v'>,
  delaySeconds = 0,
  /** Makes the id unique where the attempt does not (an operator's replay). */
  idSuffix = '',
): Promise<void> {
  const body: WebhookMessage = { kind: 'entitlements_webhook', v: 1, ...message };
  return queue.send(
    {
      id: `feed-webhook-${message.ownerId}-${message.version}-${message.attempt}${idSuffix === '' ? '' : `-${idSuffix}`}`,
      orderingKey: feedOrderingKey(message.ownerId),
      body,
    },
    { delaySeconds },
  );
}
