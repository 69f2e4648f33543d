import type { CreditPack } from './catalog.js';
import { unavailable } from './errors.js';
import type { CheckoutSessionInfo, PriceInfo } from './payments.js';
import type { Pricing } from './pricing.js';

/**
 * Whether a checkout session, as just read from Stripe, paid for a credit pack: pure, from the session
 * and the live prices alone. Nothing the buyer or an event body says is trusted; the session's metadata
 * may only name which pack to check the money against.
 */

/** Why a session earns no credits. Stable codes: they are stored in the audit row and logged. */
export type GrantRefusal =
  | 'not_payment_mode'
  | 'not_complete'
  | 'not_paid'
  | 'not_one_line_item'
  | 'not_a_pack'
  | 'currency_mismatch'
  | 'amount_mismatch';

export type PurchaseVerdict =
  | {
      readonly kind: 'grant';
      readonly pack: CreditPack;
      /**
       * Packs bought. Checkout as we create it sells one, but an adjustable quantity (a Payment Link, say)
       * paid for N packs: N times the credits, as long as N times the price was paid.
       */
      readonly quantity: number;
      readonly credits: number;
      readonly price: PriceInfo;
    }
  | { readonly kind: 'refuse'; readonly reason: GrantRefusal; readonly detail: string };

const refuse = (reason: GrantRefusal, detail: string): PurchaseVerdict => ({
  kind: 'refuse',
  reason,
  detail,
});

/**
 * The verdict on `session` given the live prices by lookup key. The pack is the one whose live price the
 * line item is; only when no pack's live price is (a pack's price replaced since checkout) does
 * `metadata.pack` name the candidate, and then the money alone must match that pack's live price.
 */
export function verifyPurchase(
  session: CheckoutSessionInfo,
  packs: readonly CreditPack[],
  prices: ReadonlyMap<string, PriceInfo>,
): PurchaseVerdict {
  if (session.mode !== 'payment') return refuse('not_payment_mode', `mode is ${session.mode}`);
  if (session.status !== 'complete') return refuse('not_complete', `status is ${session.status}`);
  if (session.paymentStatus !== 'paid')
    return refuse('not_paid', `payment status is ${session.paymentStatus}`);
  const [line, ...others] = session.lineItems;
  if (line === undefined || others.length > 0)
    return refuse('not_one_line_item', `${session.lineItems.length} line items`);
  const pack =
    packs.find((p) => prices.get(p.lookupKey)?.id === line.priceId) ??
    packs.find((p) => p.id === session.metadata.pack);
  if (pack === undefined) return refuse('not_a_pack', `price ${line.priceId} is no credit pack's live price`);
  const price = prices.get(pack.lookupKey);
  if (price === undefined || price.unitAmount === null)
    return refuse('not_a_pack', `pack ${pack.id} has no live price (lookup key ${pack.lookupKey})`);
  const quantity = line.quantity;
  if (!Number.isSafeInteger(quantity) || quantity < 1) return refuse('not_a_pack', `quantity ${quantity}`);
  if (session.currency?.toLowerCase() !== price.currency.toLowerCase())
    return refuse(
      'currency_mismatch',
      `paid in ${session.currency ?? 'no currency'}, pack ${pack.id} costs ${price.currency}`,
    );
  const expected = price.unitAmount * quantity;
  if (session.amountTotal !== expected)
    return refuse(
      'amount_mismatch',
      `paid ${session.amountTotal ?? 'nothing'}, ${quantity} x pack ${pack.id} costs ${expected} ${price.currency}`,
    );
  return { kind: 'grant', pack, quantity, credits: pack.credits * quantity, price };
}

/** A refusal that fresher prices could turn into a grant (a pack's price replaced since the cache was filled). */
const PRICE_REFUSALS: ReadonlySet<GrantRefusal> = new Set([
  'not_a_pack',
  'currency_mismatch',
  'amount_mismatch',
]);

/**
 * `verifyPurchase` against the pricing cache; when the cached prices refuse it, once more against prices
 * fetched now.
 * @throws BillingError `unavailable` (`prices_unavailable`) when no prices were ever fetched and Stripe does
 *   not answer, so the event is redelivered; a failed refresh's PaymentsError likewise
 */
export async function verifySession(
  session: CheckoutSessionInfo,
  packs: readonly CreditPack[],
  pricing: Pricing,
): Promise<PurchaseVerdict> {
  // The session's own state decides first: no price lookup for what is not a paid one-item payment.
  const cheap = verifyPurchase(session, packs, new Map());
  if (cheap.kind === 'refuse' && !PRICE_REFUSALS.has(cheap.reason)) return cheap;
  const cached = await pricing.current();
  if (cached === undefined) {
    throw unavailable(
      'prices_unavailable',
      `No credit pack prices to check checkout ${session.id} against: Stripe did not answer and none are cached`,
      60,
    );
  }
  const verdict = verifyPurchase(session, packs, cached.prices);
  if (verdict.kind === 'grant' || !PRICE_REFUSALS.has(verdict.reason)) return verdict;
  return verifyPurchase(session, packs, (await pricing.refresh()).prices);
}
