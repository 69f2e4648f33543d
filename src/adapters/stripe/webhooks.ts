import Stripe from 'stripe';
import type { Clock } from '../../billing/clock.js';
import { validationError } from '../../billing/errors.js';

export interface WebhookVerifier {
  /** The verified event as sent (not yet validated), or a 400-class error saying what was wrong. */
  verify(rawBody: string, signatureHeader: string | null): unknown;
}

/**
 * Verifies Stripe's signature on the raw body with the SDK's own implementation, and its age against an injectable
 * clock so the tolerance window is testable.
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
      let event: unknown;
      try {
        // Tolerance 0 makes the SDK check the signature only; the age is checked below on the timestamp
        // itself, so a stale delivery is told apart from a forged one without reading error messages.
        event = Stripe.webhooks.constructEvent(rawBody, signatureHeader, options.secret, 0);
      } catch (error) {
        if (error instanceof Stripe.errors.StripeSignatureVerificationError) {
          throw validationError(
            'signature_invalid',
            'The signature does not match the raw body and the webhook secret (is the body re-serialized, or the secret wrong?).',
          );
        }
        if (error instanceof SyntaxError)
          throw validationError('malformed_json', `The body is not valid JSON: ${error.message}`);
        throw error;
      }
      const signedAt = signatureTimestamp(signatureHeader);
      const ageSeconds = Math.floor(options.clock.now().getTime() / 1000) - (signedAt ?? 0);
      // As the SDK does: only an old signature is refused (a clock running behind is not a replay).
      if (signedAt === null || ageSeconds > options.toleranceSeconds) {
        throw validationError(
          'signature_timestamp_stale',
          `The signature timestamp is outside the ${options.toleranceSeconds} s tolerance; replayed or delayed delivery.`,
        );
      }
      return event;
    },
  };
}

/** The `t=` of a `Stripe-Signature` header (the SDK has accepted the header by the time this runs). */
function signatureTimestamp(header: string): number | null {
  for (const part of header.split(',')) {
    const [key, value] = part.split('=');
    if (key?.trim() === 't' && value !== undefined && /^\d+$/.test(value.trim())) return Number(value.trim());
  }
  return null;
}
