import { z } from 'zod';
import { type InvoiceRecord, invoiceRowKey } from './billing-actions.js';
import type { OwnerId } from './ids.js';
import type { SubscriptionSync, SyncOutcome } from './lifecycle.js';
import type { InvoiceInfo, PaymentsGateway } from './payments.js';
import type { TransactionAction } from './store.js';

/**
 * The Stripe events we act on, validated with zod at ingest and again when dequeued (the queue is a
 * boundary too). We read only ids from them: state is re-read from Stripe when the event is processed.
 */
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
] as const;
export type HandledEventType = (typeof HANDLED_EVENT_TYPES)[number];

const stripeId = (prefix: string) =>
  z.string().regex(new RegExp(`^${prefix}_\\w+$`), `must be a ${prefix}_ id`);
const customerRef = z.union([stripeId('cus'), z.object({ id: stripeId('cus') }).transform((c) => c.id)]);

const checkoutObject = z.object({
  id: stripeId('cs'),
  object: z.literal('checkout.session'),
  customer: customerRef,
  mode: z.enum(['subscription', 'payment', 'setup']),
  payment_status: z.string(),
  metadata: z.record(z.string(), z.string()).nullable().optional(),
});
const subscriptionObject = z.object({
  id: stripeId('sub'),
  object: z.literal('subscription'),
  customer: customerRef,
});
const scheduleObject = z.object({
  id: stripeId('sub_sched'),
  object: z.literal('subscription_schedule'),
  customer: customerRef,
});
const invoiceObject = z.object({ id: stripeId('in'), object: z.literal('invoice'), customer: customerRef });

const envelope = z.object({
  id: stripeId('evt'),
  object: z.literal('event'),
  api_version: z.string().nullable(),
  created: z.number().int(),
  livemode: z.boolean(),
  type: z.string(),
  // Only handled types have their object checked (below): others, some without an id, are acknowledged.
  data: z.object({ object: z.record(z.string(), z.unknown()) }).loose(),
});

export type ParsedEvent =
  | { readonly kind: 'ignored'; readonly id: string; readonly type: string }
  | {
      readonly kind: 'checkout';
      readonly id: string;
      readonly type: HandledEventType;
      readonly customerId: string;
      readonly sessionId: string;
      readonly mode: 'subscription' | 'payment' | 'setup';
      readonly paid: boolean;
      readonly metadata: Readonly<Record<string, string>>;
    }
  | {
      readonly kind: 'subscription';
      readonly id: string;
      readonly type: HandledEventType;
      readonly customerId: string;
    }
  | {
      readonly kind: 'invoice';
      readonly id: string;
      readonly type: HandledEventType;
      readonly customerId: string;
      readonly invoiceId: string;
    };

export class EventShapeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EventShapeError';
  }
}

/**
 * Validates an event. Unknown types parse as `ignored` (acknowledged, logged); a known type with a body
 * we cannot read, or another API version than ours, throws `EventShapeError`.
 */
export function parseStripeEvent(input: unknown, apiVersion: string): ParsedEvent {
  const parsed = envelope.safeParse(input);
  if (!parsed.success) throw new EventShapeError(`Not a Stripe event: ${z.prettifyError(parsed.error)}`);
  const event = parsed.data;
  if (event.api_version !== apiVersion) {
    throw new EventShapeError(
      `Event ${event.id} uses API version ${event.api_version ?? 'none'}; this endpoint is pinned to ${apiVersion}. Set the webhook endpoint's API version in Stripe to ${apiVersion}.`,
    );
  }
  const type = HANDLED_EVENT_TYPES.find((t) => t === event.type);
  if (type === undefined) return { kind: 'ignored', id: event.id, type: event.type };
  const object = event.data.object;
  const read = <T>(schema: z.ZodType<T>): T => {
    const result = schema.safeParse(object);
    if (!result.success) {
      throw new EventShapeError(
        `Event ${event.id} (${type}) has an unexpected body: ${z.prettifyError(result.error)}`,
      );
    }
    return result.data;
  };
  if (type.startsWith('checkout.session.')) {
    const session = read(checkoutObject);
    return {
      kind: 'checkout',
      id: event.id,
      type,
      customerId: session.customer,
      sessionId: session.id,
      mode: session.mode,
      paid: session.payment_status === 'paid' || session.payment_status === 'no_payment_required',
      metadata: session.metadata ?? {},
    };
  }
  if (type.startsWith('invoice.')) {
    const invoice = read(invoiceObject);
    return { kind: 'invoice', id: event.id, type, customerId: invoice.customer, invoiceId: invoice.id };
  }
  if (type.startsWith('subscription_schedule.')) {
    return { kind: 'subscription', id: event.id, type, customerId: read(scheduleObject).customer };
  }
  return { kind: 'subscription', id: event.id, type, customerId: read(subscriptionObject).customer };
}

export function invoiceRecord(invoice: InvoiceInfo): InvoiceRecord {
  return {
    id: invoice.id,
    number: invoice.number,
    status: invoice.status,
    currency: invoice.currency,
    amountDue: invoice.amountDue,
    amountPaid: invoice.amountPaid,
    attemptCount: invoice.attemptCount,
    billingReason: invoice.billingReason,
    created: invoice.created.toISOString(),
    periodStart: invoice.periodStart.toISOString(),
    periodEnd: invoice.periodEnd.toISOString(),
    hostedInvoiceUrl: invoice.hostedInvoiceUrl,
    subscriptionId: invoice.subscriptionId,
  };
}

/** A one-time purchase completed (credit packs); wired by the usage module. */
export type PaymentCompletedHandler = (input: {
  readonly ownerId: OwnerId;
  readonly sessionId: string;
  readonly metadata: Readonly<Record<string, string>>;
}) => Promise<void>;

export interface EventProcessor {
  process(event: ParsedEvent): Promise<SyncOutcome | { readonly kind: 'ignored' }>;
}

export function createEventProcessor(deps: {
  readonly sync: SubscriptionSync;
  readonly payments: PaymentsGateway;
  readonly onPaymentCompleted?: PaymentCompletedHandler;
}): EventProcessor {
  const { sync, payments, onPaymentCompleted } = deps;
  return {
    async process(event) {
      if (event.kind === 'ignored') return { kind: 'ignored' };
      const cause = { kind: 'event', id: event.id, type: event.type } as const;
      if (event.kind === 'invoice') {
        // The invoice too is re-read, so a late `invoice.payment_failed` cannot overwrite a later `paid`.
        const invoice = invoiceRecord(await payments.getInvoice(event.invoiceId));
        const row: TransactionAction = {
          kind: 'upsert',
          rowKey: invoiceRowKey(invoice.id),
          props: { json: JSON.stringify(invoice), created: invoice.created, status: invoice.status },
        };
        return sync.syncCustomer(event.customerId, cause, () => [row]);
      }
      const outcome = await sync.syncCustomer(event.customerId, cause);
      if (event.kind === 'checkout' && event.mode === 'payment' && event.paid && onPaymentCompleted) {
        // Its own marker (the session id) makes the grant exactly once, even if this event is redelivered.
        await onPaymentCompleted({
          ownerId: outcome.ownerId,
          sessionId: event.sessionId,
          metadata: event.metadata,
        });
      }
      return outcome;
    },
  };
}
