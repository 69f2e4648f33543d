import type { InvocationContext } from '@azure/functions';
import { z } from 'zod';
import { type EventRef, eventRefSchema, orderingKeyOf, refFromLegacy } from '../billing/event-ref.js';
import {
  describeFailure,
  RedeliveryFailedError,
  redeliveryDelaySeconds,
  redeliveryMessageId,
} from '../billing/failures.js';
import { withCause } from '../billing/feed/cause.js';
import {
  type DrainMessage,
  drainMessageSchema,
  requestDrain,
  type WebhookMessage,
  webhookMessageSchema,
} from '../billing/feed/messages.js';
import {
  requestSeatSync,
  type SeatSyncMessage,
  seatSyncMessageSchema,
} from '../billing/seat-sync-message.js';
import type { ProcessOutcome } from '../billing/stripe-events.js';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { queueTransportFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';
import { observeEvent } from '../telemetry/events.js';
import { inInvocationSpan } from '../telemetry/invocation.js';
import { recordPoisoned } from '../telemetry/metrics.js';

const messageSchema = z.object({ id: z.string(), orderingKey: z.string().optional(), body: z.unknown() });

/**
 * Applies one queued Stripe event, and decides itself what a failure means (`src/billing/failures.ts`):
 * - transient (Stripe or storage down): the event is sent again with `attempt + 1`, delayed by a growing
 *   back-off, and this delivery completes. The transport's own redelivery (a few tries seconds apart)
 *   would poison an event during any outage longer than a minute; this outlasts one of hours.
 * - permanent, or transient with every attempt used: recorded in the poison store (listed and replayed
 *   through `/api/ops/events/poison`) and completed at once.
 * - a message that is not a billing event at all: recorded as unreadable, completed.
 * It throws only when it could neither re-send nor record: then the host redelivers, and after
 * `maxDequeueCount` (`maxDeliveryCount`) moves the message to its poison (dead-letter) queue.
 */
export function processBillingEvent(
  message: unknown,
  context: InvocationContext,
  services: Services,
): Promise<void> {
  return inInvocationSpan(context, 'queue', () => processMessage(message, context, services));
}

async function processMessage(
  message: unknown,
  context: InvocationContext,
  services: Services,
): Promise<void> {
  const decoded = typeof message === 'string' ? safeJson(message) : message;
  const envelope = messageSchema.safeParse(decoded);
  if (!envelope.success) {
    await poisonUnreadable(
      services,
      context,
      message,
      'event_invalid',
      `Queue message is not a billing event: ${z.prettifyError(envelope.error)}`,
    );
    return;
  }
  // A seat sync request rides the same queue as the Stripe event references.
  const seatSync = seatSyncMessageSchema.safeParse(envelope.data.body);
  if (seatSync.success) {
    await runSeatSync(seatSync.data, context, services);
    return;
  }
  // The entitlement feed's messages ride it too (src/billing/feed/messages.ts).
  const drain = drainMessageSchema.safeParse(envelope.data.body);
  if (drain.success) {
    await runFeedDrain(drain.data, context, services);
    return;
  }
  const delivery = webhookMessageSchema.safeParse(envelope.data.body);
  if (delivery.success) {
    await runWebhookDelivery(delivery.data, context, services);
    return;
  }
  let ref: EventRef | undefined;
  try {
    ref = refOf(envelope.data.body, services.stripeApiVersion);
  } catch (error) {
    const failure = describeFailure(error);
    await poisonUnreadable(services, context, message, failure.code, errorText(error));
    return;
  }
  if (ref === undefined) {
    context.log(`event ${envelope.data.id}: ignored`);
    return;
  }
  try {
    const applying = ref;
    // Entitlement changes this event makes name it as their cause (src/billing/feed/cause.ts).
    const outcome = await withCause({ kind: 'stripe_event', id: ref.eventId, source: ref.type }, () =>
      observeEvent(
        applying,
        () => services.events.process(applying),
        () => services.clock.now().getTime(),
      ),
    );
    context.log(
      `event ${ref.eventId} (${ref.type}): ${outcome.kind}${ref.attempt > 0 ? ` after ${ref.attempt} failed attempt(s)` : ''}${notesOf(outcome)}`,
    );
    await afterSubscriptionChange(outcome, context, services);
  } catch (error) {
    await handleFailure(ref, error, context, services);
  }
}

/**
 * A per-seat subscription that changed (paid again after `past_due`, resumed, upgraded) gets a seat sync:
 * seats held while payment was in trouble are applied now. A sync that finds nothing to do costs one
 * Stripe read.
 */
async function afterSubscriptionChange(
  outcome: ProcessOutcome,
  context: InvocationContext,
  services: Services,
): Promise<void> {
  if (outcome.kind !== 'applied' || !('state' in outcome)) return;
  const { state } = outcome;
  if (!services.catalog[state.plan].perSeat || (state.status !== 'active' && state.status !== 'trialing'))
    return;
  try {
    await requestSeatSync(
      services.queue,
      { ownerId: outcome.ownerId, trigger: 'recovery', attempt: 0 },
      services.config.seatSync.delaySeconds,
    );
  } catch (error) {
    context.warn(`seat sync of ${outcome.ownerId} not queued; the seatSync timer will repair it`, error);
  }
}

/**
 * One seat sync. Deferred (another sync holds the owner, or the hourly budget is spent) comes back
 * later, never dropped; a transient failure is retried with the events' back-off; a permanent one, or
 * the last attempt, is logged and left to the `seatSync` timer, which compares every subscription hourly.
 */
async function runSeatSync(
  message: SeatSyncMessage,
  context: InvocationContext,
  services: Services,
): Promise<void> {
  const subject = `seat sync of ${message.ownerId} (${message.trigger})`;
  const again = async (next: SeatSyncMessage, delaySeconds: number) => {
    try {
      await requestSeatSync(services.queue, next, delaySeconds);
    } catch (sendError) {
      context.error(`${subject} could not be re-sent; leaving it to the host's redelivery`, sendError);
      throw new RedeliveryFailedError(`seatsync-${message.ownerId}`, { cause: sendError });
    }
  };
  try {
    const outcome = await services.seatSync.run(message.ownerId, message.trigger);
    context.log(`${subject}: ${outcome.kind}${'why' in outcome ? ` (${outcome.why})` : ''}`);
    if (outcome.kind === 'deferred') await again(message, outcome.delaySeconds);
  } catch (error) {
    if (error instanceof RedeliveryFailedError) throw error;
    const failure = describeFailure(error);
    const attempts = message.attempt + 1;
    const retry = services.config.eventRetry;
    if (failure.kind === 'transient' && attempts < retry.maxAttempts) {
      const delaySeconds = redeliveryDelaySeconds(attempts, retry);
      context.warn(
        `${subject} failed transiently (${failure.code}); again in ${delaySeconds} s: ${errorText(error)}`,
      );
      await again({ ...message, attempt: attempts }, delaySeconds);
      return;
    }
    context.error(
      `${subject} failed (${failure.kind}, ${failure.code}); the seatSync timer will repair: ${errorText(error)}`,
    );
  }
}

/**
 * Publishes an owner's unpublished `entitlements.changed` rows. A transient failure comes back later with
 * the events' back-off; past the attempts (or a permanent failure) it is logged and left to the
 * `entitlementFeedSweep` timer: the rows stay listed in `feed|pending` until a drain finishes.
 */
async function runFeedDrain(message: DrainMessage, context: InvocationContext, services: Services) {
  const subject = `entitlement feed drain of ${message.ownerId}`;
  try {
    const report = await services.feed.drain.drain(message.ownerId);
    context.log(`${subject}: published ${report.published.length}${report.settled ? '' : ' (listing kept)'}`);
  } catch (error) {
    const failure = describeFailure(error);
    const attempts = message.attempt + 1;
    const retry = services.config.eventRetry;
    if (failure.kind === 'transient' && attempts < retry.maxAttempts) {
      const delaySeconds = redeliveryDelaySeconds(attempts, retry);
      context.warn(
        `${subject} failed transiently (${failure.code}); again in ${delaySeconds} s: ${errorText(error)}`,
      );
      try {
        await requestDrain(services.queue, message.ownerId, `retry-${Date.now()}`, {
          attempt: attempts,
          delaySeconds,
        });
      } catch (sendError) {
        // Not fatal: the owner stays listed in feed|pending, and the sweep drains it.
        context.error(`${subject} could not be re-sent; the sweep will drain it`, sendError);
      }
      return;
    }
    context.error(
      `${subject} failed (${failure.kind}, ${failure.code}); the sweep will retry: ${errorText(error)}`,
    );
  }
}

/** One signed webhook delivery; the retries and the failure record are the webhook module's. */
async function runWebhookDelivery(message: WebhookMessage, context: InvocationContext, services: Services) {
  const subject = `entitlements webhook ${message.ownerId}:${message.version} (attempt ${message.attempt + 1})`;
  const webhooks = services.feed.webhooks;
  if (!webhooks) {
    context.warn(`${subject}: no ENTITLEMENT_WEBHOOK_URL configured any more; dropped`);
    return;
  }
  // Errors here are storage or queue failures (the POST's own failures are outcomes): the host redelivers.
  const outcome = await webhooks.deliver(message);
  context.log(`${subject}: ${outcome.kind}${'status' in outcome ? ` (HTTP ${outcome.status})` : ''}`);
}

async function handleFailure(
  ref: EventRef,
  error: unknown,
  context: InvocationContext,
  services: Services,
): Promise<void> {
  const failure = describeFailure(error);
  const attempts = ref.attempt + 1;
  const retry = services.config.eventRetry;
  const subject = `event ${ref.eventId} (${ref.type})`;
  if (failure.kind === 'transient' && attempts < retry.maxAttempts) {
    const delaySeconds = redeliveryDelaySeconds(attempts, retry);
    context.warn(
      `${subject} failed transiently (${failure.code}), attempt ${attempts} of ${retry.maxAttempts}; redelivering in ${delaySeconds} s: ${errorText(error)}`,
    );
    const next: EventRef = { ...ref, attempt: attempts };
    try {
      await services.queue.send(
        { id: redeliveryMessageId(ref.eventId, attempts), orderingKey: orderingKeyOf(next), body: next },
        { delaySeconds },
      );
    } catch (sendError) {
      context.error(`${subject} could not be re-sent; leaving it to the host's redelivery`, sendError);
      throw new RedeliveryFailedError(ref.eventId, { cause: sendError });
    }
    return;
  }
  const reason = failure.kind === 'permanent' ? 'permanent' : 'exhausted';
  // If this write fails the error propagates: the host redelivers the same message, unchanged.
  await services.poison.record({ ref, reason, code: failure.code, message: errorText(error), attempts });
  recordPoisoned({ type: ref.type });
  context.error(
    `${subject} poisoned (${reason}, ${failure.code}) after ${attempts} attempt(s): ${errorText(error)}`,
  );
}

async function poisonUnreadable(
  services: Services,
  context: InvocationContext,
  message: unknown,
  code: string,
  detail: string,
): Promise<void> {
  const raw = typeof message === 'string' ? message : (safeStringify(message) ?? String(message));
  await services.poison.record({ raw, reason: 'unreadable', code, message: detail });
  recordPoisoned({ type: 'unreadable' });
  context.error(`unreadable queue message poisoned (${code}): ${detail}`);
}

/** What an operator needs beside the outcome: foreign and cancelled subscriptions, a refused grant. */
function notesOf(outcome: ProcessOutcome): string {
  const notes: string[] = [];
  if ('foreign' in outcome && outcome.foreign) {
    notes.push(`ignored subscriptions not on our prices: ${outcome.foreign.join(', ')}`);
  }
  if ('duplicatesCancelled' in outcome && outcome.duplicatesCancelled) {
    notes.push(`second live subscriptions cancelled and refunded: ${outcome.duplicatesCancelled.join(', ')}`);
  }
  if ('reason' in outcome && typeof outcome.reason === 'string') notes.push(outcome.reason);
  return notes.length > 0 ? ` (${notes.join('; ')})` : '';
}

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));

function safeStringify(value: unknown): string | undefined {
  try {
    return JSON.stringify(value);
  } catch {
    return undefined;
  }
}

/** A version-2 body is the reference itself; a version-1 body (before ids-only messages) is the whole event. */
function refOf(body: unknown, apiVersion: string): EventRef | undefined {
  const ref = eventRefSchema.safeParse(body);
  if (ref.success) return ref.data;
  const legacy = refFromLegacy(body, apiVersion);
  return legacy.kind === 'enqueue' ? legacy.ref : undefined;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const handler = (message: unknown, context: InvocationContext) =>
  processBillingEvent(message, context, servicesFromEnvironment());

if (queueTransportFromEnv() === 'servicebus') {
  app.serviceBusQueue('processBillingEvent', {
    connection: 'BILLING_SERVICEBUS',
    queueName: '%BILLING_QUEUE_NAME%',
    isSessionsEnabled: true,
    handler,
  });
} else {
  app.storageQueue('processBillingEvent', {
    connection: 'BILLING_STORAGE_CONNECTION',
    queueName: '%BILLING_QUEUE_NAME%',
    handler,
  });
}
