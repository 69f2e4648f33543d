import type { InvocationContext } from '@azure/functions';
import { z } from 'zod';
import { type EventRef, EventShapeError, eventRefSchema, refFromLegacy } from '../billing/event-ref.js';
import { UnknownCustomerError, UnmappedPriceError } from '../billing/lifecycle.js';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { queueTransportFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';

const messageSchema = z.object({ id: z.string(), orderingKey: z.string().optional(), body: z.unknown() });

/** Errors that no redelivery can fix; they still go to the poison/dead-letter queue, loudly. */
const PERMANENT = [EventShapeError, UnknownCustomerError, UnmappedPriceError];

/**
 * Applies one queued Stripe event. Throwing makes the transport redeliver; after the configured number of
 * deliveries the message goes to the poison queue (Storage) or the dead-letter queue (Service Bus).
 */
export async function processBillingEvent(
  message: unknown,
  context: InvocationContext,
  services: Services,
): Promise<void> {
  const decoded = typeof message === 'string' ? safeJson(message) : message;
  const envelope = messageSchema.safeParse(decoded);
  if (!envelope.success) {
    throw new EventShapeError(
      'event_invalid',
      `Queue message is not a billing event: ${z.prettifyError(envelope.error)}`,
    );
  }
  try {
    const ref = refOf(envelope.data.body, services.stripeApiVersion);
    if (ref === undefined) {
      context.log(`event ${envelope.data.id}: ignored`);
      return;
    }
    const outcome = await services.events.process(ref);
    context.log(`event ${envelope.data.id}: ${outcome.kind}`);
  } catch (error) {
    const permanent = PERMANENT.some((kind) => error instanceof kind);
    context.error(
      `event ${envelope.data.id} failed${permanent ? ' permanently (will be dead-lettered)' : ' (will be retried)'}: ${error instanceof Error ? error.message : String(error)}`,
    );
    throw error;
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
