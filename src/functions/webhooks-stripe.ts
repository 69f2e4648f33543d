import { BillingError, unavailable, validationError } from '../billing/errors.js';
import {
  EventShapeError,
  type IngestDecision,
  orderingKeyOf,
  refFromStripeEvent,
} from '../billing/event-ref.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/**
 * Stripe webhook ingest: verify the signature on the raw body, validate the event, enqueue it, answer 200.
 * Nothing slow happens before the answer: no Stripe call, no table write; the processor does the work.
 * A bad signature, a stale timestamp, a malformed or oversized body, an unexpected API version: 400 (413),
 * nothing enqueued. Types we do not act on: 200, logged as ignored.
 */
export const stripeWebhook = defineRoute({
  name: 'stripeWebhook',
  methods: ['POST'],
  route: 'webhooks/stripe',
  access: 'anonymous',
  async handle({ request, services, invocation }) {
    const max = services.config.stripe.webhookMaxBytes;
    if (Number(request.headers.get('content-length') ?? '0') > max) {
      throw new BillingError('payload_too_large', 'body_too_large', `The body exceeds ${max} bytes.`);
    }
    const raw = Buffer.from(await request.arrayBuffer());
    if (raw.byteLength > max)
      throw new BillingError('payload_too_large', 'body_too_large', `The body exceeds ${max} bytes.`);
    const verified = services.webhooks.verify(raw.toString('utf8'), request.headers.get('stripe-signature'));
    let decision: IngestDecision;
    try {
      decision = refFromStripeEvent(verified, services.stripeApiVersion);
    } catch (error) {
      if (error instanceof EventShapeError) throw validationError(error.code, error.message);
      throw error;
    }
    if (decision.kind === 'ignored') {
      invocation.log(`stripe webhook ${decision.eventId} (${decision.type}) ignored: ${decision.why}`);
      return json(200, { received: true, ignored: true });
    }
    const event = decision.ref;
    try {
      // Ids only: the processor reads the rest from Stripe, so the message is small whatever the event's size.
      await services.queue.send({ id: event.eventId, orderingKey: orderingKeyOf(event), body: event });
    } catch (error) {
      // Stripe retries non-2xx deliveries, so a queue outage loses nothing.
      invocation.error(`stripe webhook ${event.eventId} not enqueued`, error);
      throw unavailable(
        'queue_unavailable',
        'The event could not be queued; Stripe will retry the delivery.',
        5,
        error,
      );
    }
    invocation.log(`stripe webhook ${event.eventId} (${event.type}) enqueued`);
    return json(200, { received: true });
  },
});
registerHttp(stripeWebhook);
