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
  readonly interval: 'month' | 'year' | null;
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
  readonly metadata: Readonly<Record<string, string>>;
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

/** Failures the domain distinguishes; each maps to one HTTP answer. */
export class PaymentsError extends Error {
  constructor(
    readonly kind:
      | 'rate_limited'
      | 'unavailable'
      | 'invalid_request'
      | 'not_found'
      | 'authentication'
      | 'declined',
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'PaymentsError';
  }
}

export interface PaymentsGateway {
  /** Idempotent per key: concurrent calls with one key create one customer. */
  createCustomer(input: { ownerId: string; idempotencyKey: string }): Promise<{ id: string }>;
  /** Active prices by lookup key, with their products. */
  pricesByLookupKey(lookupKeys: readonly string[]): Promise<PriceInfo[]>;
  createCheckoutSession(request: CheckoutRequest): Promise<CheckoutSessionInfo>;
  getCheckoutSession(id: string): Promise<CheckoutSessionInfo>;
  createPortalSession(input: { customerId: string; returnUrl: string }): Promise<{ url: string }>;
  getSubscription(id: string): Promise<SubscriptionInfo>;
  /** Every subscription of a customer, any status, newest first. */
  listSubscriptions(customerId: string): Promise<SubscriptionInfo[]>;
  /** Changes the price now, invoicing the prorated difference immediately. */
  changePriceNow(input: {
    subscription: SubscriptionInfo;
    priceId: string;
    quantity: number;
    idempotencyKey: string;
  }): Promise<void>;
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
  getInvoice(id: string): Promise<InvoiceInfo>;
  listInvoices(customerId: string, limit: number): Promise<InvoiceInfo[]>;
}
