import type Stripe from 'stripe';
import type { PaymentsGateway } from '../../../src/billing/payments.js';

/** The prices every contract test may use, by the name the tests give them. */
export const CONTRACT_PRICES = {
  pro_monthly: { productName: 'Pro', metadata: { plan: 'pro' }, unitAmount: 2_000, interval: 'month' },
  team_monthly: { productName: 'Team', metadata: { plan: 'team' }, unitAmount: 5_000, interval: 'month' },
  credits_pack: { productName: 'Credits', metadata: { kind: 'credits' }, unitAmount: 1_000, interval: null },
} as const;

export type ContractPrice = keyof typeof CONTRACT_PRICES;

/**
 * What the `PaymentsGateway` contract needs from the world besides the gateway itself: a way to make the
 * payments a customer would make. The sandbox pays its hosted Checkout page; real Stripe cannot pay a
 * hosted page from code, so its driver makes the same objects through the API with test cards. Anything
 * only one side can do (move the clock, inject faults, close a dispute) stays out of this interface and
 * out of the contract: those tests live in the sandbox's own suite.
 */
export interface PaymentsDriver {
  readonly gateway: PaymentsGateway;
  /** The SDK client behind the gateway, for reading back what the gateway did. */
  readonly stripe: Stripe;
  /** A gateway on the same Stripe with another secret key (for authentication failures). */
  gatewayWithKey(secretKey: string): PaymentsGateway;
  /** The lookup key the contract's price has here (unique per run on real Stripe). */
  lookupKey(price: ContractPrice): string;
  priceId(price: ContractPrice): Promise<string>;
  /** A new customer, made through the gateway and removed on cleanup. */
  customer(): Promise<string>;
  /** Records a customer the test made itself, so cleanup removes it. */
  track(customerId: string): void;
  /** A paid, active subscription of the customer to a monthly price. */
  subscribe(customerId: string, price: ContractPrice, quantity?: number): Promise<string>;
  /** A succeeded one-time card payment of `quantity` packs. */
  buyPacks(customerId: string, quantity: number): Promise<{ paymentIntentId: string; chargeId: string }>;
  /** A one-time payment the cardholder disputes (a chargeback, `needs_response`). */
  disputedPayment(customerId: string): Promise<{ chargeId: string }>;
  /** What time it is for this Stripe (the sandbox has its own clock). */
  now(): Date;
  cleanup(): Promise<void>;
}

/** Retries a read until it passes: real Stripe records some things (events, disputes) a moment later. */
export async function eventually<T>(read: () => Promise<T>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await read();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    }
  }
}
