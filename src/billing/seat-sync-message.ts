import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { idSchema, type OwnerId } from './ids.js';
import type { EventQueue } from './queue.js';

/**
 * The queue message that asks for one owner's seat sync, beside the Stripe event references
 * (`event-ref.ts`) on the same queue. It carries only the owner: the sync reads the count when it runs,
 * so every message of a burst converges on the same Stripe update (the first applies it, the rest find
 * it applied).
 */
export const SEAT_SYNC_TRIGGERS = ['membership', 'recovery', 'timer', 'admin', 'deferred'] as const;
export type SeatSyncTrigger = (typeof SEAT_SYNC_TRIGGERS)[number];

export const seatSyncMessageSchema = z.strictObject({
  kind: z.literal('seat_sync'),
  v: z.literal(1),
  ownerId: idSchema,
  trigger: z.enum(SEAT_SYNC_TRIGGERS),
  /** Transient failures so far; drives the redelivery delay like an event's. */
  attempt: z.number().int().min(0).default(0),
});
export type SeatSyncMessage = z.infer<typeof seatSyncMessageSchema>;

/** Not the customer's key: a seat sync never waits behind the owner's Stripe events, nor they behind it. */
export const seatSyncOrderingKey = (ownerId: OwnerId) => `seats:${ownerId}`;

/** Asks for a seat sync of `ownerId` in `delaySeconds`. Each message has an id of its own (Service Bus dedupe). */
export function requestSeatSync(
  queue: EventQueue,
  message: Omit<SeatSyncMessage, 'kind' | 'v'>,
  delaySeconds: number,
): Promise<void> {
  const body: SeatSyncMessage = { kind: 'seat_sync', v: 1, ...message };
  return queue.send(
    { id: `seatsync-${randomUUID()}`, orderingKey: seatSyncOrderingKey(message.ownerId), body },
    { delaySeconds },
  );
}
