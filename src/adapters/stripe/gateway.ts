import Stripe from 'stripe';
import {
  type ChargeInfo,
  type CheckoutSessionInfo,
  CONTRACT_INVOICE_METADATA,
  type DisputeInfo,
  type DisputeStatus,
  type EventSummary,
  type InvoiceInfo,
  type InvoicePreview,
  PaymentsError,
  type PaymentsGateway,
  type PriceChangeNow,
  type PriceInfo,
  type ProcessorSubscriptionStatus,
  type ScheduledPhaseInfo,
  SEAT_GENERATION_METADATA,
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

/**
 * The subscription items and proration of a price change made now, shared by the change and its
 * preview so the preview cannot price another change. Prorated and invoiced at once.
 */
function priceChangeNow({ subscription, priceId, quantity }: PriceChangeNow): {
  items: Array<{ id: string; price: string; quantity: number }>;
  proration_behavior: 'always_invoice';
} {
  const item = subscription.items[0];
  if (!item) throw new PaymentsError('invalid_request', `Subscription ${subscription.id} has no items`);
  return { items: [{ id: item.id, price: priceId, quantity }], proration_behavior: 'always_invoice' };
}

/** A previewed invoice in the domain's terms (its first page of lines: enough to explain the amount). */
function invoicePreview(invoice: Stripe.Invoice): InvoicePreview {
  return {
    amountDue: invoice.amount_due,
    total: invoice.total,
    currency: invoice.currency,
    lines: invoice.lines.data.map((line) => ({
      description: line.description,
      amount: line.amount,
      proration: line.parent?.subscription_item_details?.proration ?? false,
      periodStart: toDate(line.period.start),
      periodEnd: toDate(line.period.end),
    })),
  };
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

/** Stripe lists cap a page at 100; reading "all pages" stops here rather than run without end. */
const MAX_LISTED = 10_000;

const DISPUTE_STATUSES = [
  'warning_needs_response',
  'warning_under_review',
  'warning_closed',
  'needs_response',
  'under_review',
  'won',
  'lost',
  'prevented',
] as const satisfies readonly DisputeStatus[];

/**
 * An appeal reopens a lost dispute; while it runs the money stays withdrawn, exactly as for the first
 * round, so the domain sees the matching open status.
 */
function disputeStatus(status: string): DisputeStatus {
  if (status === 'appeal_needs_response') return 'needs_response';
  if (status === 'appeal_under_review') return 'under_review';
  return known(DISPUTE_STATUSES, status, 'dispute status');
}

const isRecord = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** An id field of an event's object, whether Stripe sent it as an id or as an expanded object. */
function idField(object: unknown, field: string): string | null {
  if (!isRecord(object)) return null;
  const value = object[field];
  if (typeof value === 'string') return value;
  if (isRecord(value) && typeof value.id === 'string') return value.id;
  return null;
}

function eventSummary(event: Stripe.Event): EventSummary {
  const object: unknown = event.data.object;
  return {
    id: event.id,
    type: event.type,
    created: toDate(event.created),
    objectId: idField(object, 'id'),
    customerId: idField(object, 'customer'),
  };
}

/** Stripe answers 400 to an action the object's state no longer allows (expire a closed session…). */
const isStateConflict = (error: unknown) =>
  error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 400;

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

/** Seconds from a `Retry-After` header, when Stripe sent one. */
function retryAfter(error: InstanceType<typeof Stripe.errors.StripeError>): number | undefined {
  const raw = error.headers?.['retry-after'];
  const value = Number(raw);
  return raw !== undefined && Number.isFinite(value) && value >= 0 ? value : undefined;
}

/**
 * Stripe's errors, mapped to the few kinds the domain acts on by the SDK's error class and the HTTP status
 * (never by message text); the SDK's error stays as `cause` for logs.
 */
function mapError(error: unknown, what: string): never {
  if (!(error instanceof Stripe.errors.StripeError)) throw error;
  const detail = `${what}: ${error.message}`;
  const cause = { cause: error };
  const status = error.statusCode;
  if (error instanceof Stripe.errors.StripeRateLimitError || status === 429) {
    throw new PaymentsError('rate_limited', detail, retryAfter(error) ?? 2, cause);
  }
  if (
    error instanceof Stripe.errors.StripeAuthenticationError ||
    error instanceof Stripe.errors.StripePermissionError
  ) {
    throw new PaymentsError('authentication', detail, undefined, cause);
  }
  // Neither is fixed by retrying: a declined card needs the customer, a reused key needs a new request.
  if (error instanceof Stripe.errors.StripeCardError)
    throw new PaymentsError('declined', detail, undefined, cause);
  if (error instanceof Stripe.errors.StripeIdempotencyError) {
    throw new PaymentsError('invalid_request', detail, undefined, cause);
  }
  if (error instanceof Stripe.errors.StripeInvalidRequestError) {
    throw new PaymentsError(status === 404 ? 'not_found' : 'invalid_request', detail, undefined, cause);
  }
  // StripeAPIError (5xx), StripeConnectionError (network) and anything the SDK could not classify.
  throw new PaymentsError('unavailable', detail, retryAfter(error) ?? 5, cause);
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
      // Day and week prices are mapped too: they match no plan, and the domain ignores their subscriptions.
      interval: p.recurring
        ? known(['day', 'week', 'month', 'year'], p.recurring.interval, 'price interval')
        : null,
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
    // proration invoices); the service period a customer pays for is on the subscription's own line. Stripe
    // lists proration lines first, so the first line that is a subscription item and not a proration is
    // taken; an invoice of prorations only (an upgrade) falls back to its first line (the rest of the
    // current period), then to the invoice's own period.
    const line =
      invoice.lines.data.find((l) => l.parent?.subscription_item_details?.proration === false) ??
      invoice.lines.data[0];
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
      collectionMethod: known(
        ['charge_automatically', 'send_invoice'],
        invoice.collection_method,
        'invoice collection method',
      ),
      dueDate: invoice.due_date === null ? null : toDate(invoice.due_date),
      metadata: { ...(invoice.metadata ?? {}) },
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

  const chargeInfo = (charge: Stripe.Charge, dispute: Stripe.Dispute | null): ChargeInfo => ({
    id: charge.id,
    customerId: idOf(charge.customer),
    paymentIntentId: idOf(charge.payment_intent),
    amount: charge.amount,
    amountRefunded: charge.amount_refunded,
    currency: charge.currency,
    dispute:
      dispute === null
        ? null
        : { id: dispute.id, status: disputeStatus(dispute.status), amount: dispute.amount },
  });

  const disputeInfo = (dispute: Stripe.Dispute): DisputeInfo => ({
    id: dispute.id,
    chargeId: idOf(dispute.charge) ?? '',
    status: disputeStatus(dispute.status),
    amount: dispute.amount,
    currency: dispute.currency,
  });

  /**
   * The subscription's schedule (made from it when it has none), and when its running phase started:
   * Stripe refuses to move the start of the phase that is running, so phase 0 restates it as it is. A
   * schedule made in the Dashboard may have started it mid-period, so the schedule says when.
   */
  async function scheduleOf(
    subscription: SubscriptionInfo,
    idempotencyKey: string,
  ): Promise<{ schedule: Stripe.SubscriptionSchedule; startDate: number }> {
    const existingId = subscription.scheduleId;
    const schedule =
      existingId === null
        ? await call(`create schedule for ${subscription.id}`, () =>
            stripe.subscriptionSchedules.create(
              { from_subscription: subscription.id },
              { idempotencyKey: `${idempotencyKey}:create` },
            ),
          )
        : await call(`retrieve schedule ${existingId}`, () =>
            stripe.subscriptionSchedules.retrieve(existingId),
          );
    return {
      schedule,
      startDate: schedule.current_phase?.start_date ?? toUnix(subscription.currentPeriodStart),
    };
  }

  const subscriptionExpand = ['latest_invoice', 'schedule'];

  /** The first (oldest) invoice of a subscription: the one a duplicate's refund gives back. */
  async function firstInvoice(subscriptionId: string): Promise<Stripe.Invoice | null> {
    const invoices = await call(`list invoices of ${subscriptionId}`, () =>
      stripe.invoices
        .list({ subscription: subscriptionId, limit: 100 })
        .autoPagingToArray({ limit: MAX_LISTED }),
    );
    return invoices.find((inv) => inv.billing_reason === 'subscription_create') ?? invoices.at(-1) ?? null;
  }

  /**
   * What paid an invoice. Since API 2025-03-31 an invoice names no payment intent or charge: its payments
   * are `invoice_payment` objects, listed by invoice, each naming the payment intent (or a legacy charge).
   */
  async function invoicePaymentOf(
    invoiceId: string,
  ): Promise<{ payment_intent: string } | { charge: string } | null> {
    const payments = await call(`list payments of ${invoiceId}`, () =>
      stripe.invoicePayments.list({ invoice: invoiceId, status: 'paid', limit: 10 }),
    );
    for (const payment of payments.data) {
      const intent = idOf(payment.payment.payment_intent);
      if (intent !== null) return { payment_intent: intent };
      const charge = idOf(payment.payment.charge);
      if (charge !== null) return { charge };
    }
    return null;
  }

  return {
    /*
     * Stripe lists events newest first, and `ending_before=<id>` returns the page of events just newer
     * than <id> (still newest first). So: the first call walks the window newest first to its oldest
     * end (keeping only the oldest `limit` + 1), and every later call asks for the events just newer
     * than the cursor (the newest event already returned), reversing each page. The cursor stays valid
     * while its event is within Stripe's 30 days and `since` is unchanged; events created while paging
     * are picked up at the end rather than skipped.
     */
    async listEvents({ since, types, cursor, limit }) {
      const filter: Stripe.EventListParams = {
        created: { gte: toUnix(since) },
        ...(types.length > 0 ? { types: [...types] } : {}),
      };
      if (cursor !== null) {
        const page = await call('list events', () =>
          stripe.events.list({ ...filter, limit, ending_before: cursor }),
        );
        const items = [...page.data].reverse().map(eventSummary);
        return { items, nextCursor: page.has_more ? (items.at(-1)?.id ?? null) : null };
      }
      let oldest: Stripe.Event[] = [];
      let after: string | undefined;
      for (let read = 0; read < MAX_LISTED; read += 100) {
        const page = await call('list events', () =>
          stripe.events.list({ ...filter, limit: 100, ...(after ? { starting_after: after } : {}) }),
        );
        oldest = [...oldest, ...page.data].slice(-(limit + 1));
        after = page.data.at(-1)?.id;
        if (!page.has_more || after === undefined) break;
      }
      const ascending = oldest.reverse();
      const items = ascending.slice(0, limit).map(eventSummary);
      return { items, nextCursor: ascending.length > limit ? (items.at(-1)?.id ?? null) : null };
    },

    async listOpenCheckoutSessions(customerId) {
      const sessions = await call(`list open checkout sessions of ${customerId}`, () =>
        stripe.checkout.sessions
          .list({ customer: customerId, status: 'open', limit: 100 })
          .autoPagingToArray({ limit: MAX_LISTED }),
      );
      return sessions.map(sessionInfo);
    },

    async expireCheckoutSession(id, idempotencyKey) {
      try {
        await stripe.checkout.sessions.expire(id, {}, { idempotencyKey });
      } catch (error) {
        // Stripe refuses (400) to expire a session that is not open. An expired one is what was wanted; a
        // complete one was paid, and its own event grants it (the processor handles duplicates): both are
        // fine. The session's state decides, not the error's wording.
        if (isStateConflict(error)) {
          const session = await call(`retrieve checkout session ${id}`, () =>
            stripe.checkout.sessions.retrieve(id),
          );
          if (session.status !== 'open') return;
        }
        mapError(error, `expire checkout session ${id}`);
      }
    },

    /*
     * Stripe filters sessions by status and creation, not by mode or payment status: those are filtered
     * here, so a page may hold fewer than `limit` sessions (even none) while `nextCursor` says more follow.
     */
    async listPaidPaymentSessions({ since, cursor, limit }) {
      const page = await call('list completed checkout sessions', () =>
        stripe.checkout.sessions.list({
          status: 'complete',
          created: { gte: toUnix(since) },
          limit,
          expand: ['data.line_items'],
          ...(cursor !== null ? { starting_after: cursor } : {}),
        }),
      );
      const items = page.data
        .filter((session) => session.mode === 'payment' && session.payment_status === 'paid')
        .map(sessionInfo);
      return { items, nextCursor: page.has_more ? (page.data.at(-1)?.id ?? null) : null };
    },

    async checkoutSessionForPaymentIntent(paymentIntentId) {
      const page = await call(`find checkout session of ${paymentIntentId}`, () =>
        stripe.checkout.sessions.list({
          payment_intent: paymentIntentId,
          limit: 1,
          expand: ['data.line_items'],
        }),
      );
      const session = page.data[0];
      return session ? sessionInfo(session) : null;
    },

    async getCharge(id) {
      const charge = await call(`retrieve charge ${id}`, () => stripe.charges.retrieve(id));
      // A charge names no dispute in this API version, only `disputed`: the dispute is listed by charge.
      let dispute: Stripe.Dispute | null = null;
      if (charge.disputed) {
        const page = await call(`list disputes of ${id}`, () =>
          stripe.disputes.list({ charge: id, limit: 1 }),
        );
        dispute = page.data[0] ?? null;
      }
      return chargeInfo(charge, dispute);
    },

    async getDispute(id) {
      return disputeInfo(await call(`retrieve dispute ${id}`, () => stripe.disputes.retrieve(id)));
    },

    async cancelDuplicateSubscription(subscriptionId, idempotencyKey) {
      try {
        // No proration credit: the first invoice is refunded in full below instead.
        await stripe.subscriptions.cancel(
          subscriptionId,
          { prorate: false, invoice_now: false },
          { idempotencyKey: `${idempotencyKey}:cancel` },
        );
      } catch (error) {
        // Already canceled (by an earlier call whose key has expired, or elsewhere): Stripe answers 400;
        // the subscription's status, not the message, says whether that is the case.
        if (!isStateConflict(error)) mapError(error, `cancel subscription ${subscriptionId}`);
        const current = await call(`retrieve subscription ${subscriptionId}`, () =>
          stripe.subscriptions.retrieve(subscriptionId),
        );
        if (current.status !== 'canceled') mapError(error, `cancel subscription ${subscriptionId}`);
      }
      const invoice = await firstInvoice(subscriptionId);
      if (invoice === null || invoice.id === undefined || invoice.amount_paid === 0) {
        return { subscriptionId, refund: null };
      }
      const invoiceId = invoice.id;
      const payment = await invoicePaymentOf(invoiceId);
      if (payment === null) return { subscriptionId, refund: null };
      // Idempotency keys last 24 hours; the refund's metadata keeps the call idempotent after that.
      const existing = await call(`list refunds of ${invoiceId}`, () =>
        stripe.refunds.list({ ...payment, limit: 100 }),
      );
      const earlier = existing.data.find(
        (r) =>
          r.metadata?.duplicateSubscription === subscriptionId &&
          r.status !== 'failed' &&
          r.status !== 'canceled',
      );
      const refund =
        earlier ??
        (await call(`refund first invoice of ${subscriptionId}`, () =>
          stripe.refunds.create(
            {
              ...payment,
              reason: 'duplicate',
              metadata: { duplicateSubscription: subscriptionId, invoice: invoiceId },
            },
            { idempotencyKey: `${idempotencyKey}:refund` },
          ),
        ));
      return { subscriptionId, refund: { id: refund.id, amount: refund.amount, currency: refund.currency } };
    },

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
        await call(`retrieve checkout session ${id}`, () =>
          stripe.checkout.sessions.retrieve(id, { expand: ['line_items'] }),
        ),
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
      // Every page: an owner with more subscriptions than one page holds must not look like fewer.
      const subs = await call(`list subscriptions of ${customerId}`, () =>
        stripe.subscriptions
          .list({
            customer: customerId,
            status: 'all',
            limit: 100,
            expand: subscriptionExpand.map((e) => `data.${e}`),
          })
          .autoPagingToArray({ limit: MAX_LISTED }),
      );
      const infos = await Promise.all(subs.map(subscriptionInfo));
      return infos.sort((a, b) => b.created.getTime() - a.created.getTime());
    },

    async changePriceNow(input) {
      const { subscription, idempotencyKey } = input;
      await call(`change price of ${subscription.id}`, () =>
        stripe.subscriptions.update(
          subscription.id,
          {
            ...priceChangeNow(input),
            // An upgrade happens only if its prorated invoice is paid; a declined card changes nothing.
            payment_behavior: 'error_if_incomplete',
          },
          { idempotencyKey },
        ),
      );
    },

    async previewPriceChangeNow(input) {
      const { subscription } = input;
      // The same items and proration behaviour as `changePriceNow`: with `always_invoice` Stripe previews
      // the invoice the update creates at once (the prorations, with any pending ones), not the renewal.
      const invoice = await call(`preview price change of ${subscription.id}`, () =>
        stripe.invoices.createPreview({
          customer: subscription.customerId,
          subscription: subscription.id,
          subscription_details: priceChangeNow(input),
        }),
      );
      return invoicePreview(invoice);
    },

    async changePriceAtPeriodEnd({ subscription, priceId, quantity, idempotencyKey }) {
      const item = subscription.items[0];
      if (!item) throw new PaymentsError('invalid_request', `Subscription ${subscription.id} has no items`);
      const { schedule, startDate } = await scheduleOf(subscription, idempotencyKey);
      const next = await price(priceId);
      const recurring = next.recurring;
      if (!recurring) throw new PaymentsError('invalid_request', `Price ${priceId} is not recurring`);
      await call(`schedule change of ${subscription.id}`, () =>
        stripe.subscriptionSchedules.update(
          schedule.id,
          {
            end_behavior: 'release',
            phases: [
              {
                items: [{ price: item.price.id, quantity: item.quantity }],
                start_date: startDate,
                end_date: toUnix(subscription.currentPeriodEnd),
                proration_behavior: 'none',
              },
              {
                items: [{ price: priceId, quantity }],
                duration: { interval: recurring.interval, interval_count: recurring.interval_count },
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

    async setSeats({ subscription, quantityNow, quantityNext, generation, idempotencyKey }) {
      const item = subscription.items[0];
      if (!item) throw new PaymentsError('invalid_request', `Subscription ${subscription.id} has no items`);
      const metadata = { [SEAT_GENERATION_METADATA]: String(generation) };
      const increase = quantityNow > item.quantity;
      const nextPrice = subscription.scheduledPhase?.price ?? item.price;
      const pendingDecrease = quantityNext < quantityNow;
      // Increases are invoiced now, prorated; a failed payment leaves the subscription past_due and
      // follows dunning (`allow_incomplete`, Stripe's default), the people stay added.
      if (subscription.scheduleId === null && !pendingDecrease) {
        await call(`set seats of ${subscription.id}`, () =>
          stripe.subscriptions.update(
            subscription.id,
            {
              items: [{ id: item.id, quantity: quantityNow }],
              proration_behavior: increase ? 'always_invoice' : 'none',
              metadata,
            },
            { idempotencyKey },
          ),
        );
        return;
      }
      // A schedule owns the next period: the generation goes on the subscription first (metadata may be
      // updated on a scheduled subscription), then both phases are restated at once.
      await call(`stamp seat generation on ${subscription.id}`, () =>
        stripe.subscriptions.update(
          subscription.id,
          { metadata },
          { idempotencyKey: `${idempotencyKey}:stamp` },
        ),
      );
      const { schedule, startDate } = await scheduleOf(subscription, idempotencyKey);
      const recurring = (await price(nextPrice.id)).recurring;
      if (!recurring) throw new PaymentsError('invalid_request', `Price ${nextPrice.id} is not recurring`);
      await call(`schedule seats of ${subscription.id}`, () =>
        stripe.subscriptionSchedules.update(
          schedule.id,
          {
            end_behavior: 'release',
            proration_behavior: increase ? 'always_invoice' : 'none',
            phases: [
              {
                items: [{ price: item.price.id, quantity: quantityNow }],
                start_date: startDate,
                end_date: toUnix(subscription.currentPeriodEnd),
                proration_behavior: 'none',
              },
              {
                items: [{ price: nextPrice.id, quantity: quantityNext }],
                duration: { interval: recurring.interval, interval_count: recurring.interval_count },
                proration_behavior: 'none',
              },
            ],
          },
          { idempotencyKey: `${idempotencyKey}:phases` },
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

    /*
     * Draft first, then its line (attached with `invoice:`), then finalize: a line is never left pending
     * on the customer, where Stripe would sweep it into their next subscription invoice. Each step has its
     * own idempotency key; before them, the customer's invoices are searched for this contract and period
     * (by metadata), so a retry after Stripe forgot the keys (24 hours) finishes the invoice it made.
     */
    async issueContractInvoice(request) {
      const { contract, period, owner } = CONTRACT_INVOICE_METADATA;
      const key = request.idempotencyKey;
      const existing = await call(`list invoices of ${request.customerId}`, () =>
        stripe.invoices
          .list({ customer: request.customerId, limit: 100 })
          .autoPagingToArray({ limit: MAX_LISTED }),
      );
      let invoice = existing.find(
        (inv) =>
          inv.metadata?.[contract] === request.contractId &&
          inv.metadata?.[period] === String(request.period) &&
          inv.status !== 'void',
      );
      invoice ??= await call(`create the invoice of ${request.contractId} period ${request.period}`, () =>
        stripe.invoices.create(
          {
            customer: request.customerId,
            collection_method: 'send_invoice',
            days_until_due: request.daysUntilDue,
            currency: request.currency,
            auto_advance: false,
            pending_invoice_items_behavior: 'exclude',
            description: request.description,
            metadata: {
              [owner]: request.ownerId,
              [contract]: request.contractId,
              [period]: String(request.period),
            },
          },
          { idempotencyKey: `${key}:invoice` },
        ),
      );
      const id = invoice.id ?? '';
      if (invoice.status === 'draft') {
        if (invoice.total === 0) {
          await call(`add the line of ${id}`, () =>
            stripe.invoiceItems.create(
              {
                customer: request.customerId,
                invoice: id,
                amount: request.amount,
                currency: request.currency,
                description: request.description,
                period: { start: toUnix(request.periodStart), end: toUnix(request.periodEnd) },
                metadata: { [contract]: request.contractId, [period]: String(request.period) },
              },
              { idempotencyKey: `${key}:item` },
            ),
          );
        }
        invoice = await call(`finalize ${id}`, () =>
          stripe.invoices.finalizeInvoice(id, { auto_advance: true }, { idempotencyKey: `${key}:finalize` }),
        );
      }
      return invoiceInfo(invoice);
    },
  };
}
