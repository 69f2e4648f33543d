import Stripe from 'stripe';
import type { Clock } from '../../billing/clock.js';
import { validationError } from '../../billing/errors.js';

export interface WebhookVerifier {
  /** The verified event as sent (not yet validated), or a 400-class error saying what was wrong. */
  verify(rawBody: string, signatureHeader: string | null): unknown;
}

/**
 * Verifies Stripe's signature on the raw body with the SDK's own implementation, with an injectable
 * clock (`receivedAt`) so the tolerance window is testable.
 */
export function createWebhookVerifier(options: {
  readonly secret: string;
  readonly toleranceSeconds: number;
  readonly clock: Clock;
}): WebhookVerifier {
  return {
    verify(rawBody, signatureHeader) {
      if (!signatureHeader) {
        throw validationError(
          'signature_missing',
          'The Stripe-Signature header is missing; is this request from Stripe?',
        );
      }
      try {
        return Stripe.webhooks.constructEvent(
          rawBody,
          signatureHeader,
          options.secret,
          options.toleranceSeconds,
          undefined,
          // The SDK takes receivedAt in milliseconds.
          options.clock.now().getTime(),
        );
      } catch (error) {
        if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
          if (/tolerance/i.test(error.message)) {
            throw validationError(
              'signature_timestamp_stale',
              `The signature timestamp is outside the ${options.toleranceSeconds} s tolerance; replayed or delayed delivery.`,
            );
          }
          throw validationError(
            'signature_invalid',
            'The signature does not match the raw body and the webhook secret (is the body re-serialized, or the secret wrong?).',
          );
        }
        if (error instanceof SyntaxError)
          throw validationError('malformed_json', `The body is not valid JSON: ${error.message}`);
        throw error;
      }
    },
  };
}
