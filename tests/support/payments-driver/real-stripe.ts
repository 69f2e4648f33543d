import type Stripe from 'stripe';
import { createStripeClient, createStripeGateway } from '../../../src/adapters/stripe/gateway.js';
import { CONTRACT_PRICES, type ContractPrice, type PaymentsDriver } from './index.js';

/** The keys the local host and the tests give the sandbox: never a real account. */
const SANDBOX_KEYS = new Set(['sk_test_localsandbox', 'sk_test_sandbox']);

/**
 * Whether the contract may run against real Stripe: only with a test-mode secret key of a real account and
 * no sandbox URL in the way. A live key never qualifies, so this suite cannot move real money.
 */
export function realStripeKey(env: NodeJS.ProcessEnv = process.env): string | null {
  const key = env.STRIPE_SECRET_KEY ?? '';
  if (!key.startsWith('sk_test_') || SANDBOX_KEYS.has(key)) return null;
  if (env.STRIPE_API_BASE !== undefined && env.STRIPE_API_BASE !== '') return null;
  return key;
}

/**
 * The contract's world on real Stripe test mode. It makes its own products and prices, with lookup keys
 * unique to this run, and leaves nothing active behind: cleanup deletes the customers it made (which
 * cancels their subscriptions) and archives the prices and products (Stripe cannot delete a price).
 */
export async function realStripeDriver(secretKey: string): Promise<PaymentsDriver> {
  const stripe = createStripeClient({ secretKey, maxNetworkRetries: 2, timeoutMs: 30_000 });
  const gateway = createStripeGateway(stripe);
  const run = `contract_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const customers = new Set<string>();
  const prices = new Map<ContractPrice, Stripe.Price>();
  const products = new Map<string, Stripe.Product>();

  for (const [name, spec] of Object.entries(CONTRACT_PRICES) as Array<
    [ContractPrice, (typeof CONTRACT_PRICES)[ContractPrice]]
  >) {
    let product = products.get(spec.productName);
    if (!product) {
      product = await stripe.products.create({
        name: `${spec.productName} (${run})`,
        metadata: { ...spec.metadata, contractRun: run },
      });
      products.set(spec.productName, product);
    }
    prices.set(
      name,
      await stripe.prices.create({
        product: product.id,
        currency: 'usd',
        unit_amount: spec.unitAmount,
        lookup_key: `${name}_${run}`,
        ...(spec.interval === null ? {} : { recurring: { interval: spec.interval } }),
      }),
    );
  }

  const priceOf = (name: ContractPrice) => {
    const price = prices.get(name);
    if (!price) throw new Error(`no price ${name}`);
    return price;
  };

  /** A card that pays (or, with `pm_card_createDispute`, pays and is then disputed), as the customer's own. */
  const attachCard = async (customerId: string, token: 'pm_card_visa' | 'pm_card_createDispute') => {
    const card = await stripe.paymentMethods.attach(token, { customer: customerId });
    await stripe.customers.update(customerId, { invoice_settings: { default_payment_method: card.id } });
    return card.id;
  };

  const pay = async (
    customerId: string,
    quantity: number,
    token: 'pm_card_visa' | 'pm_card_createDispute',
  ) => {
    const intent = await stripe.paymentIntents.create({
      amount: CONTRACT_PRICES.credits_pack.unitAmount * quantity,
      currency: 'usd',
      customer: customerId,
      payment_method: await attachCard(customerId, token),
      // Cards only in effect: nothing that would need a redirect, so confirming here completes the payment.
      automatic_payment_methods: { enabled: true, allow_redirects: 'never' },
      confirm: true,
    });
    if (typeof intent.latest_charge !== 'string') throw new Error(`payment ${intent.id} has no charge`);
    return { paymentIntentId: intent.id, chargeId: intent.latest_charge };
  };

  return {
    gateway,
    stripe,
    gatewayWithKey: (key) =>
      createStripeGateway(createStripeClient({ secretKey: key, maxNetworkRetries: 0 })),
    lookupKey: (name) => priceOf(name).lookup_key ?? '',
    priceId: async (name) => priceOf(name).id,
    async customer() {
      const { id } = await gateway.createCustomer({ ownerId: run, idempotencyKey: crypto.randomUUID() });
      customers.add(id);
      return id;
    },
    track: (id) => {
      customers.add(id);
    },
    async subscribe(customerId, name, quantity = 1) {
      await attachCard(customerId, 'pm_card_visa');
      const sub = await stripe.subscriptions.create({
        customer: customerId,
        items: [{ price: priceOf(name).id, quantity }],
        // As a paid Checkout leaves it: active, with its first invoice paid, or an error.
        payment_behavior: 'error_if_incomplete',
        metadata: { ownerId: run },
      });
      return sub.id;
    },
    buyPacks: (customerId, quantity) => pay(customerId, quantity, 'pm_card_visa'),
    disputedPayment: async (customerId) => ({
      chargeId: (await pay(customerId, 1, 'pm_card_createDispute')).chargeId,
    }),
    now: () => new Date(),
    async cleanup() {
      // Best effort over everything, then one error naming what was left behind.
      const failures: unknown[] = [];
      const attempt = (work: Promise<unknown>) => work.catch((error: unknown) => failures.push(error));
      // Deleting a customer cancels its subscriptions at once; archived prices keep their history.
      for (const id of customers) await attempt(stripe.customers.del(id));
      for (const price of prices.values()) await attempt(stripe.prices.update(price.id, { active: false }));
      for (const product of products.values()) {
        await attempt(stripe.products.update(product.id, { active: false }));
      }
      if (failures.length > 0) throw new AggregateError(failures, `contract run ${run}: cleanup incomplete`);
    },
  };
}
