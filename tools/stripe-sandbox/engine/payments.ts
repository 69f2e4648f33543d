import { invalidRequest } from '../errors.js';
import { buildCharge, buildDispute, buildPaymentIntent, buildRefund, type Metadata } from '../objects.js';
import type { MetadataParam } from '../params.js';
import { idOf, type WireCharge, type WireDispute, type WirePaymentIntent, type WireRefund } from '../wire.js';
import { changedFields, freshMetadata, snap } from './changes.js';
import type { Customers } from './customers.js';
import type { Events } from './events.js';
import { formatAmount } from './pricing.js';
import { AUTOMATIC, type EngineState, found, newestFirst, type RequestContext } from './state.js';

export type Payments = ReturnType<typeof createPayments>;

/** Card payments: payment intents and their charges, refunds, and disputes (opened and closed by control). */
export function createPayments(state: EngineState, deps: { customers: Customers; events: Events }) {
  const { paymentIntents, charges, refunds, disputes } = state;
  const { paymentMethodOf } = deps.customers;
  const { publish } = deps.events;

  /** A succeeded card payment, as Stripe records one: a payment intent and its charge. */
  function recordPayment(input: {
    amount: number;
    currency: string;
    customerId: string;
    metadata: Metadata;
  }): { intent: WirePaymentIntent; charge: WireCharge } {
    const paymentMethod = paymentMethodOf(input.customerId);
    const intent = buildPaymentIntent({
      amount: input.amount,
      currency: input.currency,
      customerId: input.customerId,
      metadata: { ...input.metadata },
      paymentMethod,
      created: state.now,
    });
    const charge = buildCharge({
      amount: input.amount,
      currency: input.currency,
      customerId: input.customerId,
      paymentIntentId: intent.id,
      paymentMethod,
      metadata: { ...input.metadata },
      created: state.now,
    });
    intent.latest_charge = charge.id;
    paymentIntents.set(intent.id, intent);
    charges.set(charge.id, charge);
    return { intent, charge };
  }

  function charge(id: string, param?: string): WireCharge {
    return found(charges, 'charge', id, param);
  }

  function openDisputeOf(chargeId: string): WireDispute | undefined {
    return [...disputes.values()].find(
      (d) =>
        idOf(d.charge) === chargeId &&
        d.status !== 'won' &&
        d.status !== 'lost' &&
        d.status !== 'warning_closed',
    );
  }

  function createRefund(
    params: {
      charge?: string | undefined;
      payment_intent?: string | undefined;
      amount?: number | undefined;
      reason?: 'duplicate' | 'fraudulent' | 'requested_by_customer' | undefined;
      metadata?: MetadataParam | undefined;
    },
    ctx: RequestContext,
  ): WireRefund {
    let target: WireCharge;
    if (params.charge !== undefined) {
      if (params.payment_intent !== undefined) {
        throw invalidRequest(
          'You may only specify one of these parameters: charge, payment_intent.',
          'charge',
        );
      }
      target = charge(params.charge, 'charge');
    } else if (params.payment_intent !== undefined) {
      const intent = found(paymentIntents, 'payment_intent', params.payment_intent, 'payment_intent');
      if (intent.latest_charge === null) {
        throw invalidRequest(
          `This PaymentIntent (${intent.id}) does not have a successful charge to refund.`,
          'payment_intent',
        );
      }
      target = charge(idOf(intent.latest_charge));
    } else {
      throw invalidRequest(
        'One of the following params should be provided for this request: payment_intent or charge.',
      );
    }
    const unrefunded = target.amount - target.amount_refunded;
    if (unrefunded === 0) {
      throw invalidRequest(
        `Charge ${target.id} has already been refunded.`,
        undefined,
        'charge_already_refunded',
      );
    }
    if (openDisputeOf(target.id) !== undefined) {
      throw invalidRequest(
        `Charge ${target.id} has been charged back; you cannot issue a refund.`,
        undefined,
        'charge_disputed',
      );
    }
    const amount = params.amount ?? unrefunded;
    if (amount > unrefunded) {
      throw invalidRequest(
        `Refund amount (${formatAmount(amount, target.currency)}) is greater than unrefunded amount on charge (${formatAmount(unrefunded, target.currency)})`,
        'amount',
        'amount_too_large',
      );
    }
    const refund = buildRefund({
      charge: target,
      amount,
      reason: params.reason ?? null,
      metadata: freshMetadata(params.metadata),
      created: state.now,
    });
    refunds.set(refund.id, refund);
    const before = structuredClone(target);
    target.amount_refunded += amount;
    target.refunded = target.amount_refunded === target.amount;
    publish(ctx, [
      snap('charge.refunded', target, changedFields(before, target)),
      snap('refund.created', refund),
    ]);
    return refund;
  }

  /** Sandbox control: the cardholder disputes a charge (an inquiry when `status` is a warning). */
  function disputeCharge(
    chargeId: string,
    input: { status: 'warning_needs_response' | 'needs_response'; reason: string },
  ): WireDispute {
    const target = charge(chargeId);
    if (openDisputeOf(target.id) !== undefined || target.disputed) {
      throw invalidRequest(`Charge ${target.id} is already disputed.`);
    }
    const dispute = buildDispute({
      charge: target,
      status: input.status,
      reason: input.reason,
      created: state.now,
    });
    disputes.set(dispute.id, dispute);
    target.disputed = true;
    const pending = [snap('charge.dispute.created', dispute)];
    // An inquiry (warning_*) moves no money; a chargeback takes the amount back at once.
    if (input.status === 'needs_response') pending.push(snap('charge.dispute.funds_withdrawn', dispute));
    publish(AUTOMATIC, pending);
    return dispute;
  }

  /** Sandbox control: the card network decides. An inquiry closes as `warning_closed` either way. */
  function closeDispute(id: string, outcome: 'won' | 'lost'): WireDispute {
    const dispute = found(disputes, 'dispute', id);
    const warning = dispute.status === 'warning_needs_response' || dispute.status === 'warning_under_review';
    if (dispute.status === 'won' || dispute.status === 'lost' || dispute.status === 'warning_closed') {
      throw invalidRequest(`Dispute ${id} is already closed (${dispute.status}).`);
    }
    dispute.status = warning ? 'warning_closed' : outcome;
    dispute.is_charge_refundable = false;
    const pending = [snap('charge.dispute.closed', dispute)];
    if (!warning && outcome === 'won') pending.push(snap('charge.dispute.funds_reinstated', dispute));
    publish(AUTOMATIC, pending);
    return dispute;
  }

  return {
    recordPayment,
    paymentIntent: (id: string): WirePaymentIntent => found(paymentIntents, 'payment_intent', id),
    charge: (id: string) => charge(id),
    dispute: (id: string): WireDispute => found(disputes, 'dispute', id),
    disputes: () => newestFirst(disputes.values()),
    refunds: () => newestFirst(refunds.values()),
    createRefund,
    disputeCharge,
    closeDispute,
  };
}
