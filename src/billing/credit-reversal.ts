import type { ChargeInfo, DisputeStatus } from './payments.js';

/**
 * How many of a pack purchase's credits its charge's refunds and dispute take back: pure, from the charge
 * as just read from Stripe. A function of the charge's current state (not of the events that changed it),
 * so every copy of every refund or dispute event, in any order, aims at the same number.
 */

/**
 * Dispute statuses under which the disputed money has left the account: an open chargeback (Stripe
 * withdraws the amount when it is created) and a lost one. Inquiries (`warning_*`) withdraw nothing and
 * `warning_closed` ends one without a chargeback; `prevented` never became one; a `won` dispute returned
 * the money. An inquiry that escalates becomes `needs_response` (event `charge.dispute.funds_withdrawn`).
 */
const FUNDS_WITHDRAWN: ReadonlySet<DisputeStatus> = new Set(['needs_response', 'under_review', 'lost']);

/**
 * The part of the charge that is no longer ours: what was refunded plus what a dispute withdrew, at most
 * the charge. A sum, not the larger of the two: a dispute withdraws its amount on top of any earlier
 * refund (a charge refunded 300 of 1000 and then disputed for the other 700 has lost all 1000), and when
 * a cardholder disputes money already refunded, Stripe still withdraws it, so the cap is what we lost
 * of this purchase. (A formal dispute cannot be refunded, so no refund follows one.)
 */
export function moneyGone(charge: Pick<ChargeInfo, 'amount' | 'amountRefunded' | 'dispute'>): number {
  const disputed =
    charge.dispute !== null && FUNDS_WITHDRAWN.has(charge.dispute.status) ? charge.dispute.amount : 0;
  return Math.min(charge.amount, Math.max(0, charge.amountRefunded) + Math.max(0, disputed));
}

/**
 * Credits to have taken back: `granted × gone / paid`, rounded down, so a partial refund never takes more
 * than its share and a full one takes exactly everything. Exact in integers (BigInt), whatever the sizes.
 */
export function clawbackTarget(
  granted: number,
  charge: Pick<ChargeInfo, 'amount' | 'amountRefunded' | 'dispute'>,
): number {
  if (charge.amount <= 0) return 0;
  const gone = moneyGone(charge);
  if (gone >= charge.amount) return granted;
  return Number((BigInt(granted) * BigInt(gone)) / BigInt(charge.amount));
}
