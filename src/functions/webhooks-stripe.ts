import { BillingError, unavailable, validationError } from '../billing/errors.js';
import { EventShapeError, parseStripeEvent } from '../billing/stripe-events.js';
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
    let event: ReturnType<typeof parseStripeEvent>;
    try {
      event = parseStripeEvent(verified, services.stripeApiVersion);
    } catch (error) {
      if (error instanceof EventShapeError) {
        const code = /API version/.test(error.message) ? 'api_version_unexpected' : 'event_invalid';
        throw validationError(code, error.message);
      }
      throw error;
    }
    if (event.kind === 'ignored') {
      invocation.log(`stripe webhook ${event.id} (${event.type}) ignored: not a type we act on`);
      return json(200, { received: true, ignored: true });
    }
    try {
      await services.queue.send({ id: event.id, orderingKey: event.customerId, body: verified });
    } catch (error) {
      // Stripe retries non-2xx deliveries, so a queue outage loses nothing.
      invocation.error(`stripe webhook ${event.id} not enqueued`, error);
      throw unavailable(
        'queue_unavailable',
        'The event could not be queued; Stripe will retry the delivery.',
        5,
      );
    }
    invocation.log(`stripe webhook ${event.id} (${event.type}) enqueued`);
    return json(200, { received: true });
  },
});

registerHttp(stripeWebhook);
