/**
 * The payments port: what the domain needs from the payment processor, in the domain's own terms.
 * `src/adapters/stripe/gateway.ts` implements it with the official Stripe SDK (real Stripe, or the local
 * sandbox in development and tests). Nothing here knows Stripe's wire format.
 */

/** A price as the processor knows it, with what tier detection needs. */
export interface PriceInfo {
  readonly id: string;
  readonly lookupKey: string | null;
  readonly unitAmount: number | null;
  readonly currency: string;
  /** Day and week prices exist in Stripe but match no plan of ours: subscriptions on them are ignored. */
  readonly interval: 'day' | 'week' | 'month' | 'year' | null;
  readonly productId: string;
  readonly productMetadata: Readonly<Record<string, string>>;
}

export interface SubscriptionItemInfo {
  readonly id: string;
  readonly price: PriceInfo;
  readonly quantity: number;
}

/** A change the processor will make at a future phase boundary (a downgrade waiting for period end). */
export interface ScheduledPhaseInfo {
  readonly scheduleId: string;
  readonly startsAt: Date;
  readonly price: PriceInfo;
  readonly quantity: number;
}

/** The processor's subscription states, as sent. Mapped to access in `src/billing/lifecycle.ts`. */
export type ProcessorSubscriptionStatus =
  | 'active'
  | 'trialing'
  | 'past_due'
  | 'unpaid'
  | 'canceled'
  | 'incomplete'
  | 'incomplete_expired'
  | 'paused';

export interface SubscriptionInfo {
  readonly id: string;
  readonly customerId: string;
  readonly status: ProcessorSubscriptionStatus;
  readonly items: readonly SubscriptionItemInfo[];
  readonly currentPeriodStart: Date;
  readonly currentPeriodEnd: Date;
  /**
   * Where the billing cycle is anchored (Stripe's `billing_cycle_anchor`): monthly usage windows of a
   * yearly plan, and windows after a period end whose renewal is not yet known, step from it.
   */
  readonly billingCycleAnchor: Date;
  readonly cancelAtPeriodEnd: boolean;
  readonly created: Date;
  readonly scheduleId: string | null;
  readonly scheduledPhase: ScheduledPhaseInfo | null;
  /** The latest invoice's failed automatic attempts, for dunning (0 when it is paid). */
  readonly latestInvoiceAttempts: number;
  readonly metadata: Readonly<Record<string, string>>;
}

export interface InvoiceInfo {
  readonly id: string;
  readonly customerId: string;
  readonly subscriptionId: string | null;
  readonly status: 'draft' | 'open' | 'paid' | 'uncollectible' | 'void';
  readonly number: string | null;
  readonly currency: string;
  readonly amountDue: number;
  readonly amountPaid: number;
  readonly attemptCount: number;
  readonly billingReason: string | null;
  readonly created: Date;
  readonly periodStart: Date;
  readonly periodEnd: Date;
  readonly hostedInvoiceUrl: string | null;
  /** `send_invoice` for invoices the customer pays by themselves (enterprise contracts). */
  readonly collectionMethod: 'charge_automatically' | 'send_invoice';
  /** When a `send_invoice` invoice is due; `null` for others and drafts. */
  readonly dueDate: Date | null;
  readonly metadata: Readonly<Record<string, string>>;
}

/** Metadata naming the enterprise contract an invoice bills (how its events are recognised). */
export const CONTRACT_INVOICE_METADATA = {
  owner: 'billing_owner',
  contract: 'contract_id',
  period: 'contract_period',
} as const;

/** One period of an enterprise contract, billed by a Stripe invoice the customer pays (`send_invoice`). */
export interface ContractInvoiceRequest {
  readonly customerId: string;
  readonly ownerId: string;
  readonly contractId: string;
  /** 0 for the first period. */
  readonly period: number;
  readonly periodStart: Date;
  readonly periodEnd: Date;
  /** In the currency's smallest unit. */
  readonly amount: number;
  readonly currency: string;
  readonly daysUntilDue: number;
  readonly description: string;
  /** Prefix of the idempotency keys of each call (one per contract and period). */
  readonly idempotencyKey: string;
}

/**
 * An invoice the processor would create, shown before anything is changed (Stripe's invoice preview):
 * what is due and why. `amountDue` is in the currency's minor unit, after the customer's balance.
 */
export interface InvoicePreview {
  readonly amountDue: number;
  readonly total: number;
  readonly currency: string;
  readonly lines: ReadonlyArray<{
    readonly description: string | null;
    readonly amount: number;
    /** A credit for unused time or a charge for the remaining time of the period (not a full period). */
    readonly proration: boolean;
    readonly periodStart: Date;
    readonly periodEnd: Date;
  }>;
}

/** A change of a subscription's price made now: what `changePriceNow` does and its preview shows. */
export interface PriceChangeNow {
  readonly subscription: SubscriptionInfo;
  readonly priceId: string;
  readonly quantity: number;
}

export interface CheckoutSessionInfo {
  readonly id: string;
  readonly url: string | null;
  readonly mode: 'subscription' | 'payment' | 'setup';
  readonly status: 'open' | 'complete' | 'expired';
  readonly paymentStatus: 'paid' | 'unpaid' | 'no_payment_required';
  readonly customerId: string | null;
  readonly subscriptionId: string | null;
  readonly paymentIntentId: string | null;
  /** What the customer paid, in the currency's minor unit (`amount_total`); null for setup mode. */
  readonly amountTotal: number | null;
  readonly currency: string | null;
  /** The price of each line item (payment mode: the pack that was bought). */
  readonly lineItems: ReadonlyArray<{ readonly priceId: string; readonly quantity: number }>;
  readonly created: Date;
  readonly metadata: Readonly<Record<string, string>>;
}

/** A card payment (what a credit pack's checkout produced), with what a refund or dispute took back. */
export interface ChargeInfo {
  readonly id: string;
  readonly customerId: string | null;
  readonly paymentIntentId: string | null;
  readonly amount: number;
  readonly amountRefunded: number;
  readonly currency: string;
  /** The charge's dispute, if any: while open or lost its money is gone; a won dispute returns it. */
  readonly dispute: { readonly id: string; readonly status: DisputeStatus; readonly amount: number } | null;
}

export type DisputeStatus =
  | 'warning_needs_response'
  | 'warning_under_review'
  | 'warning_closed'
  | 'needs_response'
  | 'under_review'
  | 'won'
  | 'lost'
  | 'prevented';

export interface DisputeInfo {
  readonly id: string;
  readonly chargeId: string;
  readonly status: DisputeStatus;
  readonly amount: number;
  readonly currency: string;
}

/** An event as listed by the processor (for the reconciler): the ids it names, nothing else. */
export interface EventSummary {
  readonly id: string;
  readonly type: string;
  readonly created: Date;
  /** `data.object.id`. */
  readonly objectId: string | null;
  /** `data.object.customer`, when the object has one. */
  readonly customerId: string | null;
}

/** One page of a list; `nextCursor` is opaque, null on the last page. */
export interface Page<T> {
  readonly items: readonly T[];
  readonly nextCursor: string | null;
}

/** What was done to a second live subscription (see `lifecycle.ts`, one live subscription per owner). */
export interface DuplicateCancellation {
  readonly subscriptionId: string;
  /** The refund of its first invoice, when there was a payment to refund. */
  readonly refund: { readonly id: string; readonly amount: number; readonly currency: string } | null;
}

export interface CheckoutRequest {
  readonly customerId: string;
  readonly ownerId: string;
  readonly mode: 'subscription' | 'payment';
  readonly priceId: string;
  readonly quantity: number;
  readonly successUrl: string;
  readonly cancelUrl: string;
  readonly metadata: Readonly<Record<string, string>>;
  readonly idempotencyKey: string;
}

export type PaymentsErrorKind =
  | 'rate_limited'
  | 'unavailable'
  | 'invalid_request'
  | 'not_found'
  | 'authentication'
  | 'declined';

/** Failures the domain distinguishes; each maps to one HTTP answer. `code` is the kind. */
export class PaymentsError extends Error {
  constructor(
    readonly kind: PaymentsErrorKind,
    message: string,
    readonly retryAfterSeconds?: number,
    options: { readonly cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PaymentsError';
  }

  get code(): PaymentsErrorKind {
    return this.kind;
  }

  /** A 429, a 5xx or a network failure: the same call may succeed later. */
  get transient(): boolean {
    return this.kind === 'rate_limited' || this.kind === 'unavailable';
  }
}

/** Where a per-seat subscription's sync stamps the generation of the count it applied. */
export const SEAT_GENERATION_METADATA = 'seat_generation';

export interface PaymentsGateway {
  /** Idempotent per key: concurrent calls with one key create one customer. */
  createCustomer(input: { ownerId: string; idempotencyKey: string }): Promise<{ id: string }>;
  /** Active prices by lookup key, with their products. */
  pricesByLookupKey(lookupKeys: readonly string[]): Promise<PriceInfo[]>;
  createCheckoutSession(request: CheckoutRequest): Promise<CheckoutSessionInfo>;
  getCheckoutSession(id: string): Promise<CheckoutSessionInfo>;
  createPortalSession(input: { customerId: string; returnUrl: string }): Promise<{ url: string }>;
  getSubscription(id: string): Promise<SubscriptionInfo>;
  /** Every subscription of a customer, any status, newest first: all pages, not only the first. */
  listSubscriptions(customerId: string): Promise<SubscriptionInfo[]>;
  /**
   * Events created at or after `since`, oldest first, of the given types (Stripe keeps 30 days), one page
   * of at most `limit`. For the reconciler: which customers changed since its last run.
   */
  listEvents(input: {
    since: Date;
    types: readonly string[];
    cursor: string | null;
    limit: number;
  }): Promise<Page<EventSummary>>;
  /** Open checkout sessions of a customer (to expire them when a new one is made). */
  listOpenCheckoutSessions(customerId: string): Promise<CheckoutSessionInfo[]>;
  /** Expires an open session so it can no longer be paid; an already expired one is not an error. */
  expireCheckoutSession(id: string, idempotencyKey: string): Promise<void>;
  /** Completed payment-mode sessions created at or after `since`, one page (reconciler: ungranted packs). */
  listPaidPaymentSessions(input: {
    since: Date;
    cursor: string | null;
    limit: number;
  }): Promise<Page<CheckoutSessionInfo>>;
  /** The payment-mode checkout session that created a payment intent, if one did. */
  checkoutSessionForPaymentIntent(paymentIntentId: string): Promise<CheckoutSessionInfo | null>;
  getCharge(id: string): Promise<ChargeInfo>;
  getDispute(id: string): Promise<DisputeInfo>;
  /**
   * Cancels a subscription at once (no proration credit) and refunds its first invoice's payment in full:
   * for a second live subscription an owner should never have had. Idempotent per key prefix.
   */
  cancelDuplicateSubscription(subscriptionId: string, idempotencyKey: string): Promise<DuplicateCancellation>;
  /** Changes the price now, invoicing the prorated difference immediately. */
  changePriceNow(input: PriceChangeNow & { readonly idempotencyKey: string }): Promise<void>;
  /**
   * The invoice `changePriceNow` with the same input would create and collect at once, changing
   * nothing: the same items and proration, previewed by the processor.
   */
  previewPriceChangeNow(input: PriceChangeNow): Promise<InvoicePreview>;
  /** Keeps the current price until the period ends, then switches (a subscription schedule). */
  changePriceAtPeriodEnd(input: {
    subscription: SubscriptionInfo;
    priceId: string;
    quantity: number;
    idempotencyKey: string;
  }): Promise<void>;
  /** Drops a pending scheduled change; the subscription continues as it is. */
  releaseSchedule(scheduleId: string, idempotencyKey: string): Promise<void>;
  setCancelAtPeriodEnd(subscriptionId: string, cancel: boolean, idempotencyKey: string): Promise<void>;
  setQuantity(input: {
    subscription: SubscriptionInfo;
    quantity: number;
    idempotencyKey: string;
  }): Promise<void>;
  /**
   * Sets a per-seat subscription's quantity to absolute numbers, stamping `generation` in the
   * subscription's metadata (`seat_generation`) so an older computation can be recognised and refused
   * (`seat-sync.ts`). `quantityNow` above the current quantity is prorated and invoiced at once
   * (`always_invoice`); `quantityNext`, below it, takes effect at the next renewal through a schedule
   * phase, with no credit for the rest of this period. A pending price change keeps its price.
   */
  setSeats(input: {
    subscription: SubscriptionInfo;
    quantityNow: number;
    quantityNext: number;
    generation: number;
    idempotencyKey: string;
  }): Promise<void>;
  getInvoice(id: string): Promise<InvoiceInfo>;
  listInvoices(customerId: string, limit: number): Promise<InvoiceInfo[]>;
  /**
   * Issues one contract period's invoice: a draft (`send_invoice`, `days_until_due`, metadata naming the
   * owner, contract and period, other pending items excluded), its one line, finalized. Idempotent per
   * contract and period, beyond Stripe's 24-hour idempotency keys too: an invoice the customer already
   * has for this contract and period (found by its metadata) is finished and returned, never made twice.
   */
  issueContractInvoice(request: ContractInvoiceRequest): Promise<InvoiceInfo>;
}
