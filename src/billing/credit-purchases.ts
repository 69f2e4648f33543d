import { creditPack } from './catalog.js';
import type { Credits } from './credits.js';
import type { OwnerId } from './ids.js';
import type { SyncCause } from './lifecycle.js';
import type { CheckoutSessionInfo } from './payments.js';

/**
 * Credit packs bought through Checkout (payment mode): granted once when Stripe says the session is paid,
 * and taken back when the payment is refunded or disputed. Both read Stripe's objects, never an event
 * body, so they are right whatever order or how many times the events arrive.
 */
export type CreditPurchaseOutcome =
  | { readonly kind: 'granted'; readonly ownerId: OwnerId; readonly credits: number }
  | { readonly kind: 'duplicate'; readonly ownerId: OwnerId }
  /** Not a purchase we grant for (unpaid, not a pack, amount or currency not the pack's); logged. */
  | { readonly kind: 'not_granted'; readonly ownerId: OwnerId; readonly reason: string }
  /** Credits taken back (negative) or given back after a won dispute (positive). */
  | { readonly kind: 'reversed'; readonly ownerId: OwnerId; readonly credits: number }
  | { readonly kind: 'unchanged'; readonly ownerId: OwnerId | null; readonly reason: string };

export interface CreditPurchases {
  /** Grants a paid pack's credits exactly once per session. `session` was just read from Stripe. */
  grantForSession(
    ownerId: OwnerId,
    session: CheckoutSessionInfo,
    cause: SyncCause,
  ): Promise<CreditPurchaseOutcome>;
  /**
   * Brings a pack purchase's credits in line with its charge's refunds and dispute (re-read from Stripe):
   * converges to the same balance however many refund and dispute events arrive, in any order.
   */
  reconcileCharge(chargeId: string, cause: SyncCause): Promise<CreditPurchaseOutcome>;
}

/** Until refunds and disputes are handled: grants a paid session's pack, read from the session itself. */
export function createCreditPurchases(deps: { readonly credits: Credits }): CreditPurchases {
  return {
    async grantForSession(ownerId, session) {
      const pack = creditPack(session.metadata.pack ?? '');
      if (session.paymentStatus !== 'paid' || !pack) {
        return { kind: 'not_granted', ownerId, reason: 'not a paid credit pack' };
      }
      const outcome = await deps.credits.grantCredits({
        ownerId,
        credits: pack.credits,
        sourceId: session.id,
        description: pack.displayName,
      });
      return outcome.kind === 'granted'
        ? { kind: 'granted', ownerId, credits: outcome.credits }
        : { kind: 'duplicate', ownerId };
    },
    async reconcileCharge(chargeId) {
      return { kind: 'unchanged', ownerId: null, reason: `refunds of ${chargeId} are not handled yet` };
    },
  };
}
