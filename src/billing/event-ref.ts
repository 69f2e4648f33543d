import { z } from 'zod';

/**
 * What a queued Stripe event carries: its ids, never its body. The processor reads the state it needs
 * from Stripe when it applies the event (docs/decisions/0003-refetch-on-every-event.md), so a message's
 * size does not depend on the event's, and a body that was valid when sent cannot be trusted later.
 */

/** The Stripe event types we act on. Others are acknowledged at ingest and never queued. */
export const HANDLED_EVENT_TYPES = [
  'checkout.session.completed',
  'checkout.session.async_payment_succeeded',
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'customer.subscription.paused',
  'customer.subscription.resumed',
  'customer.subscription.trial_will_end',
  'customer.subscription.pending_update_applied',
  'customer.subscription.pending_update_expired',
  'subscription_schedule.updated',
  'subscription_schedule.released',
  'subscription_schedule.canceled',
  'subscription_schedule.completed',
  'invoice.paid',
  'invoice.payment_succeeded',
  'invoice.payment_failed',
  'invoice.payment_action_required',
  'invoice.finalized',
  'invoice.marked_uncollectible',
  'invoice.voided',
  /** Sent when a `send_invoice` invoice passes its due date unpaid (enterprise contract invoices). */
  'invoice.overdue',
  'charge.refunded',
  'charge.dispute.created',
  'charge.dispute.closed',
  'charge.dispute.funds_withdrawn',
  'charge.dispute.funds_reinstated',
] as const;
export type HandledEventType = (typeof HANDLED_EVENT_TYPES)[number];

export const isHandledEventType = (type: string): type is HandledEventType =>
  HANDLED_EVENT_TYPES.some((t) => t === type);

/** Which object an event names, and so what the processor re-reads. */
export type EventSubject = 'checkout' | 'subscription' | 'schedule' | 'invoice' | 'charge' | 'dispute';

export function subjectOf(type: HandledEventType): EventSubject {
  if (type.startsWith('checkout.session.')) return 'checkout';
  if (type.startsWith('subscription_schedule.')) return 'schedule';
  if (type.startsWith('invoice.')) return 'invoice';
  if (type.startsWith('charge.dispute.')) return 'dispute';
  if (type.startsWith('charge.')) return 'charge';
  return 'subscription';
}

const stripeId = z
  .string()
  .min(3)
  .max(255)
  .regex(/^[a-z]+_[A-Za-z0-9_]+$/, 'must be a Stripe id');

/** The queue message body (version 2). Version 1 carried the whole event as `body`; see `refFromLegacy`. */
export const eventRefSchema = z.object({
  v: z.literal(2),
  eventId: stripeId,
  type: z.enum(HANDLED_EVENT_TYPES),
  /** `data.object.id`: the session, subscription, schedule, invoice, charge or dispute. */
  objectId: stripeId,
  /** `data.object.customer`; null for objects without one (disputes), found by the processor. */
  customerId: stripeId.nullable(),
  /** Deliveries so far that failed transiently; drives the redelivery delay. */
  attempt: z.number().int().min(0).default(0),
  /** Stripe's `event.created` (Unix seconds): the webhook-to-applied lag is measured from it. */
  created: z.number().int().positive().optional(),
});
export type EventRef = z.infer<typeof eventRefSchema>;

/** Messages of one key are applied in order (the Service Bus session): one customer, one owner. */
export const orderingKeyOf = (ref: EventRef): string => ref.customerId ?? ref.objectId;

export class EventShapeError extends Error {
  readonly code: 'event_invalid' | 'api_version_unexpected';
  constructor(code: EventShapeError['code'], message: string, options: { readonly cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EventShapeError';
    this.code = code;
  }
}

const customerRef = z
  .union([stripeId, z.object({ id: stripeId }).transform((c) => c.id)])
  .nullable()
  .optional()
  .transform((c) => c ?? null);

const envelope = z.object({
  id: stripeId,
  object: z.literal('event'),
  api_version: z.string().nullable(),
  created: z.number().int().positive(),
  type: z.string(),
  data: z.object({ object: z.object({ id: stripeId, customer: customerRef }).loose() }).loose(),
});

const typeOnly = z.object({ id: stripeId, object: z.literal('event'), type: z.string() }).loose();

export type IngestDecision =
  | { readonly kind: 'enqueue'; readonly ref: EventRef }
  | { readonly kind: 'ignored'; readonly eventId: string; readonly type: string; readonly why: string };

/**
 * Reads the ids out of a verified event. A type we do not act on is ignored (whatever its body, so a
 * new Stripe object shape cannot fail it); so is a checkout completed without a customer (a Payment
 * Link or guest checkout: not one of ours). A handled type whose body lacks the ids (a customer, except
 * on disputes), or another API version than ours, throws `EventShapeError`.
 */
export function refFromStripeEvent(input: unknown, apiVersion: string): IngestDecision {
  const head = typeOnly.safeParse(input);
  if (!head.success) {
    throw new EventShapeError('event_invalid', `Not a Stripe event: ${z.prettifyError(head.error)}`);
  }
  const type = head.data.type;
  if (!isHandledEventType(type)) {
    return { kind: 'ignored', eventId: head.data.id, type, why: 'not a type we act on' };
  }
  const parsed = envelope.safeParse(input);
  if (!parsed.success) {
    throw new EventShapeError(
      'event_invalid',
      `Event ${head.data.id} (${type}) has an unexpected body: ${z.prettifyError(parsed.error)}`,
    );
  }
  const event = parsed.data;
  if (event.api_version !== apiVersion) {
    throw new EventShapeError(
      'api_version_unexpected',
      `Event ${event.id} uses API version ${event.api_version ?? 'none'}; this endpoint is pinned to ${apiVersion}. Set the webhook endpoint's API version in Stripe to ${apiVersion}.`,
    );
  }
  const customerId = event.data.object.customer;
  const subject = subjectOf(type);
  if (customerId === null && subject === 'checkout') {
    return {
      kind: 'ignored',
      eventId: event.id,
      type,
      why: 'the session has no customer (a Payment Link or guest checkout is not one of ours)',
    };
  }
  // Disputes name a charge, not a customer; every other object we act on always has one.
  if (customerId === null && subject !== 'dispute') {
    throw new EventShapeError(
      'event_invalid',
      `Event ${event.id} (${type}) has an unexpected body: data.object.customer is missing`,
    );
  }
  return {
    kind: 'enqueue',
    ref: {
      v: 2,
      eventId: event.id,
      type,
      objectId: event.data.object.id,
      customerId,
      attempt: 0,
      created: event.created,
    },
  };
}

/** A version-1 message (`{ id, orderingKey, body: <whole event> }`) still in a queue after a deploy. */
export function refFromLegacy(body: unknown, apiVersion: string): IngestDecision {
  return refFromStripeEvent(body, apiVersion);
}
