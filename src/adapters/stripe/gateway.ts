import Stripe from 'stripe';
import {
  type CheckoutSessionInfo,
  type InvoiceInfo,
  PaymentsError,
  type PaymentsGateway,
  type PriceInfo,
  type ProcessorSubscriptionStatus,
  type ScheduledPhaseInfo,
  type SubscriptionInfo,
} from '../../billing/payments.js';

/**
 * The API version every request and every webhook is pinned to. Webhooks with another version are
 * refused at ingest, because the processor's parsing assumes these shapes.
 */
export const STRIPE_API_VERSION = '2026-10-28.endive' satisfies typeof Stripe.API_VERSION;

export interface StripeGatewayOptions {
  readonly secretKey: string;
  /** Unset for real Stripe; the local sandbox's URL in development and tests. */
  readonly apiBase?: URL | undefined;
  /**
   * SDK retries, with back-off, of network errors, 409s (a concurrent request with the same idempotency
   * key) and 5xx; 429s are not retried by the SDK, they surface as `rate_limited`. @default 2
   */
  readonly maxNetworkRetries?: number;
  /** Per-request timeout. @default 10000 */
  readonly timeoutMs?: number;
}

const toDate = (seconds: number) => new Date(seconds * 1000);

/**
 * Stripe's enums are open (new values may appear without a version change); ours are closed. A value we
 * do not know is refused loudly rather than guessed, so the message dead-letters with the reason.
 */
function known<const T extends string>(values: readonly T[], value: string, what: string): T {
  const found = values.find((v) => v === value);
  if (found === undefined) {
    throw new PaymentsError(
      'invalid_request',
      `Unknown ${what} "${value}" from Stripe (expected ${values.join(', ')})`,
    );
  }
  return found;
}

const SUBSCRIPTION_STATUSES = [
  'active',
  'trialing',
  'past_due',
  'unpaid',
  'canceled',
  'incomplete',
  'incomplete_expired',
  'paused',
] as const satisfies readonly ProcessorSubscriptionStatus[];
const toUnix = (date: Date) => Math.floor(date.getTime() / 1000);
const idOf = (value: string | { id: string } | null | undefined): string | null =>
  value === null || value === undefined ? null : typeof value === 'string' ? value : value.id;

/** The Stripe SDK client the gateway and the webhook verifier share. */
export function createStripeClient(options: StripeGatewayOptions): Stripe {
  const base = options.apiBase;
  return new Stripe(options.secretKey, {
    apiVersion: STRIPE_API_VERSION,
    maxNetworkRetries: options.maxNetworkRetries ?? 2,
    timeout: options.timeoutMs ?? 10_000,
    appInfo: { name: 'billing-backend' },
    ...(base
      ? {
          host: base.hostname,
          port: Number(base.port) || (base.protocol === 'https:' ? 443 : 80),
          protocol: base.protocol === 'https:' ? 'https' : 'http',
        }
      : {}),
  });
}

/** Stripe's errors, mapped to the few kinds the domain acts on. */
function mapError(error: unknown, what: string): never {
  if (error instanceof Stripe.errors.StripeError) {
    const detail = `${what}: ${error.message}`;
    if (error instanceof Stripe.errors.StripeRateLimitError)
      throw new PaymentsError('rate_limited', detail, 2);
    if (
      error instanceof Stripe.errors.StripeAuthenticationError ||
      error instanceof Stripe.errors.StripePermissionError
    ) {
      throw new PaymentsError('authentication', detail);
    }
    // Neither is fixed by retrying: a declined card needs the customer, a reused key needs a new request.
    if (error instanceof Stripe.errors.StripeCardError) throw new PaymentsError('declined', detail);
    if (error instanceof Stripe.errors.StripeIdempotencyError)
      throw new PaymentsError('invalid_request', detail);
    if (error instanceof Stripe.errors.StripeInvalidRequestError) {
      throw new PaymentsError(error.statusCode === 404 ? 'not_found' : 'invalid_request', detail);
    }
    throw new PaymentsError('unavailable', detail, 5);
  }
  throw error;
}

async function call<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    return mapError(error, what);
  }
}

export function createStripeGateway(stripe: Stripe): PaymentsGateway {
  // Products and prices rarely change; caching them keeps tier detection to one call per event.
  const products = new Map<string, Promise<Stripe.Product | Stripe.DeletedProduct>>();
  const prices = new Map<string, Promise<Stripe.Price>>();

  const product = (id: string) => {
    let found = products.get(id);
    if (!found) {
      found = call(`retrieve product ${id}`, () => stripe.products.retrieve(id));
      found.catch(() => products.delete(id));
      products.set(id, found);
    }
    return found;
  };
  const price = (id: string) => {
    let found = prices.get(id);
    if (!found) {
      found = call(`retrieve price ${id}`, () => stripe.prices.retrieve(id));
      found.catch(() => prices.delete(id));
      prices.set(id, found);
    }
    return found;
  };

  async function priceInfo(value: string | Stripe.Price | Stripe.DeletedPrice): Promise<PriceInfo> {
    const p = typeof value === 'string' ? await price(value) : value.deleted ? await price(value.id) : value;
    const productValue = p.product;
    const productId = typeof productValue === 'string' ? productValue : productValue.id;
    let metadata: Record<string, string> = {};
    if (typeof productValue !== 'string' && !productValue.deleted) metadata = productValue.metadata;
    else if (p.lookup_key === null) {
      // Only needed when the lookup key is missing: tier detection then falls back to product metadata.
      const fetched = await product(productId);
      if (!fetched.deleted) metadata = fetched.metadata;
    }
    return {
      id: p.id,
      lookupKey: p.lookup_key,
      unitAmount: p.unit_amount,
      currency: p.currency,
      interval: p.recurring ? known(['month', 'year'], p.recurring.interval, 'price interval') : null,
      productId,
      productMetadata: metadata,
    };
  }

  async function scheduledPhase(
    sub: Stripe.Subscription,
    periodEnd: Date,
  ): Promise<ScheduledPhaseInfo | null> {
    const schedule = sub.schedule;
    if (schedule === null || typeof schedule === 'string' || schedule.status !== 'active') return null;
    const next = schedule.phases.find((phase) => phase.start_date >= toUnix(periodEnd) - 1);
    const item = next?.items[0];
    if (!next || !item) return null;
    return {
      scheduleId: schedule.id,
      startsAt: toDate(next.start_date),
      price: await priceInfo(item.price),
      quantity: item.quantity ?? 1,
    };
  }

  async function subscriptionInfo(sub: Stripe.Subscription): Promise<SubscriptionInfo> {
    const items = await Promise.all(
      sub.items.data.map(async (item) => ({
        id: item.id,
        price: await priceInfo(item.price),
        quantity: item.quantity ?? 1,
      })),
    );
    // Since API 2025-03-31 the period lives on each item; our subscriptions have one item.
    const first = sub.items.data[0];
    const periodStart = toDate(first?.current_period_start ?? sub.start_date);
    const periodEnd = toDate(first?.current_period_end ?? sub.start_date);
    const invoice = sub.latest_invoice;
    const latestInvoiceAttempts =
      invoice !== null && typeof invoice !== 'string' && invoice.status === 'open'
        ? invoice.attempt_count
        : 0;
    return {
      id: sub.id,
      customerId: idOf(sub.customer) ?? '',
      status: known(SUBSCRIPTION_STATUSES, sub.status, 'subscription status'),
      items,
      currentPeriodStart: periodStart,
      currentPeriodEnd: periodEnd,
      billingCycleAnchor: toDate(sub.billing_cycle_anchor),
      cancelAtPeriodEnd: sub.cancel_at_period_end,
      created: toDate(sub.created),
      scheduleId: idOf(sub.schedule),
      scheduledPhase: await scheduledPhase(sub, periodEnd),
      latestInvoiceAttempts,
      metadata: sub.metadata,
    };
  }

  const invoiceInfo = (invoice: Stripe.Invoice): InvoiceInfo => {
    // The invoice's own period_* is the period that just ended on renewals (and a point on first and
    // proration invoices); the service period a customer pays for is on the line.
    const line = invoice.lines.data[0];
    return {
      id: invoice.id ?? '',
      customerId: idOf(invoice.customer) ?? '',
      subscriptionId: idOf(invoice.parent?.subscription_details?.subscription),
      status: known(
        ['draft', 'open', 'paid', 'uncollectible', 'void'],
        invoice.status ?? 'draft',
        'invoice status',
      ),
      number: invoice.number,
      currency: invoice.currency,
      amountDue: invoice.amount_due,
      amountPaid: invoice.amount_paid,
      attemptCount: invoice.attempt_count,
      billingReason: invoice.billing_reason,
      created: toDate(invoice.created),
      periodStart: toDate(line?.period.start ?? invoice.period_start),
      periodEnd: toDate(line?.period.end ?? invoice.period_end),
      hostedInvoiceUrl: invoice.hosted_invoice_url ?? null,
    };
  };

  const sessionInfo = (session: Stripe.Checkout.Session): CheckoutSessionInfo => ({
    id: session.id,
    url: session.url,
    mode: known(['subscription', 'payment', 'setup'], session.mode, 'checkout mode'),
    status: known(['open', 'complete', 'expired'], session.status ?? 'open', 'checkout status'),
    paymentStatus: known(['paid', 'unpaid', 'no_payment_required'], session.payment_status, 'payment status'),
    customerId: idOf(session.customer),
    subscriptionId: idOf(session.subscription),
    paymentIntentId: idOf(session.payment_intent),
    amountTotal: session.amount_total,
    currency: session.currency,
    // Filled by the gateway methods that expand `line_items` (the credit grant path).
    lineItems: (session.line_items?.data ?? []).flatMap((line) =>
      line.price ? [{ priceId: line.price.id, quantity: line.quantity ?? 1 }] : [],
    ),
    created: toDate(session.created),
    metadata: session.metadata ?? {},
  });

  // Placeholders while the adapter is written (issue 8): each names what it will do.
  const pending = (what: string) => async (): Promise<never> => {
    throw new PaymentsError('invalid_request', `${what} is not implemented in the Stripe gateway yet`);
  };

  const subscriptionExpand = ['latest_invoice', 'schedule'];

  return {
    listEvents: pending('listEvents'),
    listOpenCheckoutSessions: pending('listOpenCheckoutSessions'),
    expireCheckoutSession: pending('expireCheckoutSession'),
    listPaidPaymentSessions: pending('listPaidPaymentSessions'),
    checkoutSessionForPaymentIntent: pending('checkoutSessionForPaymentIntent'),
    getCharge: pending('getCharge'),
    getDispute: pending('getDispute'),
    cancelDuplicateSubscription: pending('cancelDuplicateSubscription'),
    async createCustomer({ ownerId, idempotencyKey }) {
      const customer = await call('create customer', () =>
        stripe.customers.create({ metadata: { ownerId } }, { idempotencyKey }),
      );
      return { id: customer.id };
    },

    async pricesByLookupKey(lookupKeys) {
      const list = await call('list prices', () =>
        stripe.prices.list({
          lookup_keys: [...lookupKeys],
          active: true,
          expand: ['data.product'],
          limit: 100,
        }),
      );
      return Promise.all(list.data.map((p) => priceInfo(p)));
    },

    async createCheckoutSession(request) {
      const metadata = { ...request.metadata, ownerId: request.ownerId };
      const session = await call('create checkout session', () =>
        stripe.checkout.sessions.create(
          {
            mode: request.mode,
            customer: request.customerId,
            client_reference_id: request.ownerId,
            line_items: [{ price: request.priceId, quantity: request.quantity }],
            success_url: request.successUrl,
            cancel_url: request.cancelUrl,
            metadata,
            ...(request.mode === 'subscription'
              ? { subscription_data: { metadata } }
              : { payment_intent_data: { metadata } }),
          },
          { idempotencyKey: request.idempotencyKey },
        ),
      );
      return sessionInfo(session);
    },

    async getCheckoutSession(id) {
      return sessionInfo(
        await call(`retrieve checkout session ${id}`, () => stripe.checkout.sessions.retrieve(id)),
      );
    },

    async createPortalSession({ customerId, returnUrl }) {
      const session = await call('create portal session', () =>
        stripe.billingPortal.sessions.create({ customer: customerId, return_url: returnUrl }),
      );
      return { url: session.url };
    },

    async getSubscription(id) {
      const sub = await call(`retrieve subscription ${id}`, () =>
        stripe.subscriptions.retrieve(id, { expand: subscriptionExpand }),
      );
      return subscriptionInfo(sub);
    },

    async listSubscriptions(customerId) {
      const list = await call(`list subscriptions of ${customerId}`, () =>
        stripe.subscriptions.list({
          customer: customerId,
          status: 'all',
          limit: 20,
          expand: subscriptionExpand.map((e) => `data.${e}`),
        }),
      );
      const infos = await Promise.all(list.data.map(subscriptionInfo));
      return infos.sort((a, b) => b.created.getTime() - a.created.getTime());
    },

    async changePriceNow({ subscription, priceId, quantity, idempotencyKey }) {
      const item = subscription.items[0];
      if (!item) throw new PaymentsError('invalid_request', `Subscription ${subscription.id} has no items`);
      await call(`change price of ${subscription.id}`, () =>
        stripe.subscriptions.update(
          subscription.id,
          {
            items: [{ id: item.id, price: priceId, quantity }],
            proration_behavior: 'always_invoice',
            // An upgrade happens only if its prorated invoice is paid; a declined card changes nothing.
            payment_behavior: 'error_if_incomplete',
          },
          { idempotencyKey },
        ),
      );
    },

    async changePriceAtPeriodEnd({ subscription, priceId, quantity, idempotencyKey }) {
      const item = subscription.items[0];
      if (!item) throw new PaymentsError('invalid_request', `Subscription ${subscription.id} has no items`);
      const scheduleId =
        subscription.scheduleId ??
        (
          await call(`create schedule for ${subscription.id}`, () =>
            stripe.subscriptionSchedules.create(
              { from_subscription: subscription.id },
              { idempotencyKey: `${idempotencyKey}:create` },
            ),
          )
        ).id;
      const next = await price(priceId);
      const interval = next.recurring?.interval === 'year' ? 'year' : 'month';
      await call(`schedule change of ${subscription.id}`, () =>
        stripe.subscriptionSchedules.update(
          scheduleId,
          {
            end_behavior: 'release',
            phases: [
              {
                items: [{ price: item.price.id, quantity: item.quantity }],
                start_date: toUnix(subscription.currentPeriodStart),
                end_date: toUnix(subscription.currentPeriodEnd),
                proration_behavior: 'none',
              },
              {
                items: [{ price: priceId, quantity }],
                duration: { interval, interval_count: 1 },
                proration_behavior: 'none',
              },
            ],
          },
          { idempotencyKey: `${idempotencyKey}:phases` },
        ),
      );
    },

    async releaseSchedule(scheduleId, idempotencyKey) {
      await call(`release schedule ${scheduleId}`, () =>
        stripe.subscriptionSchedules.release(scheduleId, {}, { idempotencyKey }),
      );
    },

    async setCancelAtPeriodEnd(subscriptionId, cancel, idempotencyKey) {
      await call(`set cancel_at_period_end on ${subscriptionId}`, () =>
        stripe.subscriptions.update(subscriptionId, { cancel_at_period_end: cancel }, { idempotencyKey }),
      );
    },

    async setQuantity({ subscription, quantity, idempotencyKey }) {
      const item = subscription.items[0];
      if (!item) throw new PaymentsError('invalid_request', `Subscription ${subscription.id} has no items`);
      await call(`set quantity of ${subscription.id}`, () =>
        stripe.subscriptions.update(
          subscription.id,
          { items: [{ id: item.id, quantity }], proration_behavior: 'create_prorations' },
          { idempotencyKey },
        ),
      );
    },

    async getInvoice(id) {
      return invoiceInfo(await call(`retrieve invoice ${id}`, () => stripe.invoices.retrieve(id)));
    },

    async listInvoices(customerId, limit) {
      const list = await call(`list invoices of ${customerId}`, () =>
        stripe.invoices.list({ customer: customerId, limit }),
      );
      return list.data.map(invoiceInfo);
    },
  };
}
