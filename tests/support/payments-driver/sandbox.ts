import Stripe from 'stripe';
import { z } from 'zod';
import { createStripeClient, createStripeGateway } from '../../../src/adapters/stripe/gateway.js';
import { startStripeSandbox } from '../../../tools/stripe-sandbox/index.js';
import { CONTRACT_PRICES, type ContractPrice, type PaymentsDriver } from './index.js';

const paid = z.object({
  session: z.object({ subscription: z.string().nullable(), payment_intent: z.string().nullable() }),
});

/** The contract's world on the local sandbox: a fresh sandbox per test, paid through its hosted page. */
export async function sandboxDriver(): Promise<PaymentsDriver> {
  const sandbox = await startStripeSandbox({
    port: 0,
    webhookSecret: 'whsec_contract',
    apiVersion: Stripe.API_VERSION,
    prices: Object.entries(CONTRACT_PRICES).map(([lookupKey, p]) => ({
      lookupKey,
      productName: p.productName,
      productMetadata: p.metadata,
      unitAmount: p.unitAmount,
      currency: 'usd',
      recurring: p.interval === null ? null : { interval: p.interval },
    })),
  });
  const apiBase = new URL(sandbox.url);
  const client = (secretKey: string) => createStripeClient({ secretKey, apiBase, maxNetworkRetries: 0 });
  const stripe = client('sk_test_contract');
  const gateway = createStripeGateway(stripe);

  const post = async (path: string, body: unknown = {}) => {
    const response = await fetch(`${sandbox.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    if (response.status !== 200) throw new Error(`${path}: ${response.status} ${await response.text()}`);
    return (await response.json()) as unknown;
  };
  const priceId = async (price: ContractPrice) => {
    const [found] = await gateway.pricesByLookupKey([price]);
    if (!found) throw new Error(`no price ${price}`);
    return found.id;
  };
  /** Checkout as the customer does it: a session, then the hosted page's Pay button. */
  const pay = async (customerId: string, price: ContractPrice, quantity: number) => {
    const session = await gateway.createCheckoutSession({
      customerId,
      ownerId: 'owner-contract',
      mode: CONTRACT_PRICES[price].interval === null ? 'payment' : 'subscription',
      priceId: await priceId(price),
      quantity,
      successUrl: 'http://localhost/ok',
      cancelUrl: 'http://localhost/cancel',
      metadata: {},
      idempotencyKey: `checkout-${crypto.randomUUID()}`,
    });
    return paid.parse(await post(`/checkout/${session.id}/pay`)).session;
  };
  const buyPacks = async (customerId: string, quantity: number) => {
    const { payment_intent: paymentIntentId } = await pay(customerId, 'credits_pack', quantity);
    if (paymentIntentId === null) throw new Error('no payment intent');
    const intent = await stripe.paymentIntents.retrieve(paymentIntentId);
    if (typeof intent.latest_charge !== 'string') throw new Error('no charge');
    return { paymentIntentId, chargeId: intent.latest_charge };
  };

  return {
    gateway,
    stripe,
    gatewayWithKey: (secretKey) => createStripeGateway(client(secretKey)),
    lookupKey: (price) => price,
    priceId,
    customer: async () =>
      (await gateway.createCustomer({ ownerId: 'owner-contract', idempotencyKey: crypto.randomUUID() })).id,
    track: () => undefined,
    async subscribe(customerId, price, quantity = 1) {
      const { subscription } = await pay(customerId, price, quantity);
      if (subscription === null) throw new Error('no subscription');
      return subscription;
    },
    buyPacks,
    async disputedPayment(customerId) {
      const { chargeId } = await buyPacks(customerId, 1);
      await post(`/_sandbox/charges/${chargeId}/dispute`, { status: 'needs_response' });
      return { chargeId };
    },
    now: () => sandbox.now(),
    cleanup: () => sandbox.stop(),
  };
}
