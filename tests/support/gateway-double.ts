import type { PaymentsGateway } from '../../src/billing/payments.js';

/**
 * A `PaymentsGateway` for unit tests that gives the methods a test uses and refuses every other call, so
 * a test cannot pass by reaching Stripe in a way it did not mean to. One list of the port's methods,
 * checked complete by the compiler: a method added to the port fails the build here, not in each fake.
 */

const METHODS = [
  'createCustomer',
  'pricesByLookupKey',
  'createCheckoutSession',
  'getCheckoutSession',
  'createPortalSession',
  'getSubscription',
  'listSubscriptions',
  'listEvents',
  'listOpenCheckoutSessions',
  'expireCheckoutSession',
  'listPaidPaymentSessions',
  'checkoutSessionForPaymentIntent',
  'getCharge',
  'getDispute',
  'cancelDuplicateSubscription',
  'changePriceNow',
  'previewPriceChangeNow',
  'changePriceAtPeriodEnd',
  'releaseSchedule',
  'setCancelAtPeriodEnd',
  'setQuantity',
  'setSeats',
  'getInvoice',
  'listInvoices',
  'issueContractInvoice',
] as const satisfies readonly (keyof PaymentsGateway)[];

type Unlisted = Exclude<keyof PaymentsGateway, (typeof METHODS)[number]>;
// Fails to compile when the port has a method the list lacks.
const listComplete: [Unlisted] extends [never] ? true : Unlisted = true;
void listComplete;

export class UnexpectedGatewayCallError extends Error {
  readonly code = 'unexpected_gateway_call';
  constructor(
    readonly method: string,
    user: string,
  ) {
    super(`${user} does not call PaymentsGateway.${method}`);
    this.name = 'UnexpectedGatewayCallError';
  }
}

export function gatewayDouble(used: Partial<PaymentsGateway>, user = 'This test'): PaymentsGateway {
  const refusing = Object.fromEntries(
    METHODS.map((method) => [
      method,
      async (): Promise<never> => {
        throw new UnexpectedGatewayCallError(method, user);
      },
    ]),
  ) as unknown as PaymentsGateway;
  return { ...refusing, ...used };
}
