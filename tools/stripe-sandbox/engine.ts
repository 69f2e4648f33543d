import type Stripe from 'stripe';
import { cardDeclined, invalidRequest, noSuch, SandboxError } from './errors.js';
import type { ObjectLookup } from './expand.js';
import {
  buildCharge,
  buildCheckoutLineItem,
  buildCheckoutSession,
  buildCustomer,
  buildDispute,
  buildInvoice,
  buildInvoiceLine,
  buildInvoicePayment,
  buildPaymentIntent,
  buildPhase,
  buildPortalSession,
  buildPrice,
  buildProduct,
  buildRefund,
  buildSchedule,
  buildSubscription,
  buildSubscriptionItem,
  type LineDraft,
  type Metadata,
  planOf,
} from './objects.js';
import type {
  CheckoutCreateParams,
  MetadataParam,
  PhaseParams,
  ProrationBehavior,
  ScheduleUpdateParams,
  SubscriptionUpdateParams,
} from './params.js';
import type { SandboxPriceSeed } from './types.js';
import {
  addInterval,
  DAY,
  type Interval,
  idOf,
  ids,
  list,
  nextBoundary,
  type WireCharge,
  type WireCheckoutLineItem,
  type WireCheckoutSession,
  type WireCustomer,
  type WireDispute,
  type WireEvent,
  type WireInvoice,
  type WireInvoicePayment,
  type WirePaymentIntent,
  type WirePhase,
  type WirePortalSession,
  type WirePrice,
  type WireProduct,
  type WireRefund,
  type WireSchedule,
  type WireSubscription,
  type WireSubscriptionItem,
} from './wire.js';

/** Who caused a change: an API request (its id and idempotency key) or the sandbox itself (nulls). */
export interface RequestContext {
  readonly requestId: string | null;
  readonly idempotencyKey: string | null;
}

export const AUTOMATIC: RequestContext = { requestId: null, idempotencyKey: null };

export interface EngineOptions {
  readonly apiVersion: string;
  /** Unix seconds. */
  readonly startTime: number;
  readonly prices: readonly SandboxPriceSeed[];
  /** The sandbox's base URL (known once it listens). */
  readonly baseUrl: () => string;
  /** Whether an event emitted now would be queued for delivery (sets `pending_webhooks`). */
  readonly willDeliver: () => boolean;
  /** Receives every event, in emission order. */
  readonly publish: (event: WireEvent) => void;
}

interface SessionRecord {
  session: WireCheckoutSession;
  readonly lineItems: ReadonlyArray<{ readonly price: WirePrice; readonly quantity: number }>;
  /** The `line_items` list Stripe shows only when expanded (the gateway expands it; its own endpoint is not served). */
  readonly lineItemObjects: WireCheckoutLineItem[];
  readonly subscriptionMetadata: Metadata;
  readonly paymentIntentMetadata: Metadata;
}

interface SubscriptionRecord {
  sub: WireSubscription;
  /** Proration lines of `create_prorations` updates, billed on the next invoice. */
  pending: LineDraft[];
}

interface ScheduleRecord {
  schedule: WireSchedule;
  /** Phase boundaries up to here have been acted on. */
  processedUntil: number;
}

/** An event captured at the moment of the change, published later in the order the flow wants. */
interface Pending {
  readonly type: Stripe.Event.Type;
  readonly object: unknown;
  readonly previous: Record<string, unknown> | undefined;
}

interface ItemTarget {
  existing: WireSubscriptionItem | null;
  price: WirePrice;
  quantity: number;
}

interface ItemChange {
  readonly itemId: string;
  readonly before: { readonly price: WirePrice; readonly quantity: number } | null;
  readonly after: { readonly price: WirePrice; readonly quantity: number } | null;
}

export type ForcedStatus = 'unpaid' | 'paused' | 'active' | 'past_due';

const RETRY_DELAY = 3 * DAY;
const MAX_AUTOMATIC_ATTEMPTS = 4;

function snap(type: Stripe.Event.Type, object: unknown, previous?: Record<string, unknown>): Pending {
  return {
    type,
    object: structuredClone(object),
    previous: previous === undefined ? undefined : structuredClone(previous),
  };
}

/** The previous values of every top-level field that changed, as Stripe's `previous_attributes`. */
function changedFields(before: object, after: object): Record<string, unknown> | undefined {
  const previous: Record<string, unknown> = {};
  const next = new Map(Object.entries(after));
  for (const [key, value] of Object.entries(before)) {
    if (JSON.stringify(value) !== JSON.stringify(next.get(key))) previous[key] = value;
  }
  return Object.keys(previous).length > 0 ? previous : undefined;
}

/** Stripe's metadata update: `''` clears everything, a key set to `''` is removed, others are set. */
function mergeMetadata(current: Metadata, update: MetadataParam): Metadata {
  if (update === '') return {};
  const merged: Metadata = { ...current };
  for (const [key, value] of Object.entries(update)) {
    if (value === '') delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

function freshMetadata(update: MetadataParam | undefined): Metadata {
  return update === undefined ? {} : mergeMetadata({}, update);
}

function formatAmount(amount: number, currency: string): string {
  return new Intl.NumberFormat('en-US', { style: 'currency', currency: currency.toUpperCase() }).format(
    amount / 100,
  );
}

function dateLabel(seconds: number): string {
  return new Date(seconds * 1000).toISOString().slice(0, 10);
}

function unitAmount(price: WirePrice): number {
  return price.unit_amount ?? 0;
}

const INTERVALS: readonly Interval[] = ['day', 'week', 'month', 'year'];
const PRORATIONS: readonly ProrationBehavior[] = ['always_invoice', 'create_prorations', 'none'];

function recurringOf(price: WirePrice): { interval: Interval; count: number } {
  const recurring = price.recurring;
  if (!recurring) throw new Error(`price ${price.id} is not recurring`);
  const interval = INTERVALS.find((known) => known === recurring.interval);
  if (!interval) throw new Error(`price ${price.id} has an unknown interval ${recurring.interval}`);
  return { interval, count: recurring.interval_count };
}

/** Stripe's enums are open (`string & {}`); the sandbox only ever stores the three it knows. */
function prorationOf(value: string): ProrationBehavior {
  return PRORATIONS.find((known) => known === value) ?? 'create_prorations';
}

function periodOf(sub: WireSubscription): { start: number; end: number } {
  const first = sub.items.data[0];
  if (!first) throw new Error(`subscription ${sub.id} has no items`);
  return { start: first.current_period_start, end: first.current_period_end };
}

function intervalKey(items: ReadonlyArray<{ price: WirePrice }>): string {
  const first = items[0];
  if (!first) return '';
  const { interval, count } = recurringOf(first.price);
  return `${count}/${interval}`;
}

export type Engine = ReturnType<typeof createEngine>;

/**
 * The sandbox's state and Stripe's billing rules over it: customers, catalog, Checkout, subscriptions
 * with prorations and schedules, invoices and dunning, and the clock that drives renewals. Every state
 * change publishes events with snapshots taken at the moment of the change.
 */
export function createEngine(options: EngineOptions) {
  let now = options.startTime;
  let sequence = 0;
  const customers = new Map<string, WireCustomer>();
  const failingCustomers = new Set<string>();
  const paymentMethods = new Map<string, string>();
  const products = new Map<string, WireProduct>();
  const prices = new Map<string, WirePrice>();
  const sessions = new Map<string, SessionRecord>();
  const portalSessions = new Map<string, WirePortalSession>();
  const subscriptions = new Map<string, SubscriptionRecord>();
  const schedules = new Map<string, ScheduleRecord>();
  const invoices = new Map<string, WireInvoice>();
  const paymentIntents = new Map<string, WirePaymentIntent>();
  const charges = new Map<string, WireCharge>();
  const refunds = new Map<string, WireRefund>();
  const disputes = new Map<string, WireDispute>();
  const invoicePayments = new Map<string, WireInvoicePayment>();
  const events: WireEvent[] = [];
  const eventsById = new Map<string, WireEvent>();
  const portalConfiguration = ids.portalConfiguration();

  seedCatalog();

  function seedCatalog(): void {
    const byName = new Map<string, WireProduct>();
    const lookupKeys = new Set<string>();
    for (const seed of options.prices) {
      if (lookupKeys.has(seed.lookupKey))
        throw new Error(`Duplicate sandbox price lookup key "${seed.lookupKey}".`);
      lookupKeys.add(seed.lookupKey);
      if (!Number.isSafeInteger(seed.unitAmount) || seed.unitAmount < 0) {
        throw new Error(`Sandbox price "${seed.lookupKey}" needs a non-negative integer unitAmount.`);
      }
      let product = byName.get(seed.productName);
      if (!product) {
        product = buildProduct({
          name: seed.productName,
          metadata: { ...seed.productMetadata },
          created: now,
        });
        byName.set(seed.productName, product);
        products.set(product.id, product);
      }
      const price = buildPrice({
        productId: product.id,
        lookupKey: seed.lookupKey,
        unitAmount: seed.unitAmount,
        currency: seed.currency,
        interval: seed.recurring?.interval ?? null,
        created: now,
      });
      prices.set(price.id, price);
      if (product.default_price === null || product.default_price === undefined)
        product.default_price = price.id;
    }
  }

  // ---- events -------------------------------------------------------------------------------------

  function publish(ctx: RequestContext, pending: readonly Pending[]): void {
    for (const item of pending) {
      const event: WireEvent = {
        id: ids.event(),
        object: 'event',
        api_version: options.apiVersion,
        created: now,
        data: {
          object: item.object,
          ...(item.previous !== undefined ? { previous_attributes: item.previous } : {}),
        },
        livemode: false,
        pending_webhooks: options.willDeliver() ? 1 : 0,
        request: { id: ctx.requestId, idempotency_key: ctx.idempotencyKey },
        type: item.type,
      };
      sequence++;
      events.push(event);
      eventsById.set(event.id, event);
      options.publish(event);
    }
  }

  // ---- lookups ------------------------------------------------------------------------------------

  /** A missing id in the URL is a 404; one named by a parameter is a 400 (`resource_missing`). */
  function missing(kind: string, id: string, param?: string): SandboxError {
    if (param === undefined) return noSuch(kind, id);
    return new SandboxError(400, 'invalid_request_error', `No such ${kind}: '${id}'`, {
      param,
      code: 'resource_missing',
    });
  }

  /** The object with this id, or Stripe's "No such …" error (a 404, or a 400 naming the parameter). */
  function found<T>(store: ReadonlyMap<string, T>, kind: string, id: string, param?: string): T {
    const value = store.get(id);
    if (value === undefined) throw missing(kind, id, param);
    return value;
  }

  function customer(id: string, param?: string): WireCustomer {
    return found(customers, 'customer', id, param);
  }

  function price(id: string, param?: string): WirePrice {
    return found(prices, 'price', id, param);
  }

  function recurringPrice(id: string, param: string): WirePrice {
    const found = price(id, param);
    if (!found.recurring) {
      throw invalidRequest(
        `The price specified (${id}) is a one-time price; subscriptions need recurring prices.`,
        param,
      );
    }
    return found;
  }

  function product(id: string): WireProduct {
    return found(products, 'product', id);
  }

  function productName(p: WirePrice): string {
    return products.get(idOf(p.product))?.name ?? 'Product';
  }

  function subscriptionRecord(id: string, param?: string): SubscriptionRecord {
    return found(subscriptions, 'subscription', id, param);
  }

  function scheduleRecord(id: string): ScheduleRecord {
    return found(schedules, 'subscription schedule', id);
  }

  function invoice(id: string): WireInvoice {
    return found(invoices, 'invoice', id);
  }

  function sessionRecord(id: string): SessionRecord {
    return found(sessions, 'checkout.session', id);
  }

  function paymentMethodOf(customerId: string): string {
    let pm = paymentMethods.get(customerId);
    if (!pm) {
      pm = ids.paymentMethod();
      paymentMethods.set(customerId, pm);
    }
    return pm;
  }

  function findObject(id: string): unknown {
    const stores: ReadonlyArray<Map<string, unknown>> = [
      customers,
      products,
      prices,
      portalSessions,
      invoices,
      paymentIntents,
      charges,
      refunds,
      disputes,
      invoicePayments,
      eventsById,
    ];
    for (const store of stores) {
      const found = store.get(id);
      if (found !== undefined) return structuredClone(found);
    }
    const sub = subscriptions.get(id);
    if (sub) return structuredClone(sub.sub);
    const schedule = schedules.get(id);
    if (schedule) return structuredClone(schedule.schedule);
    const session = sessions.get(id);
    if (session) return structuredClone(session.session);
    return undefined;
  }

  const lookup: ObjectLookup = {
    byId: findObject,
    virtual(owner, field) {
      if (owner.object === 'checkout.session' && field === 'line_items' && typeof owner.id === 'string') {
        const record = sessions.get(owner.id);
        if (!record) return undefined;
        return list(structuredClone(record.lineItemObjects), `/v1/checkout/sessions/${owner.id}/line_items`);
      }
      return undefined;
    },
  };

  // ---- invoices -------------------------------------------------------------------------------------

  function createInvoice(
    rec: SubscriptionRecord,
    drafts: readonly LineDraft[],
    reason: 'subscription_create' | 'subscription_cycle' | 'subscription_update',
    period: { start: number; end: number },
  ): WireInvoice {
    const sub = rec.sub;
    const id = ids.invoice();
    const inv = buildInvoice({
      id,
      customer: customer(idOf(sub.customer)),
      subscriptionId: sub.id,
      subscriptionMetadata: { ...sub.metadata },
      currency: sub.currency,
      created: now,
      periodStart: period.start,
      periodEnd: period.end,
      billingReason: reason,
      lines: drafts.map((draft) => buildInvoiceLine(draft, id, sub.id)),
    });
    invoices.set(id, inv);
    sub.latest_invoice = id;
    return inv;
  }

  function finalize(inv: WireInvoice): void {
    const cust = customer(idOf(inv.customer ?? ''));
    const sequenceNumber = cust.next_invoice_sequence ?? 1;
    cust.next_invoice_sequence = sequenceNumber + 1;
    inv.number = `${cust.invoice_prefix ?? 'SANDBOX'}-${String(sequenceNumber).padStart(4, '0')}`;
    inv.status = 'open';
    inv.status_transitions.finalized_at = now;
    inv.effective_at = now;
    inv.ending_balance = 0;
    inv.hosted_invoice_url = `${options.baseUrl()}/invoice/${inv.id}`;
    inv.webhooks_delivered_at = now;
  }

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
      created: now,
    });
    const charge = buildCharge({
      amount: input.amount,
      currency: input.currency,
      customerId: input.customerId,
      paymentIntentId: intent.id,
      paymentMethod,
      metadata: { ...input.metadata },
      created: now,
    });
    intent.latest_charge = charge.id;
    paymentIntents.set(intent.id, intent);
    charges.set(charge.id, charge);
    return { intent, charge };
  }

  function markPaid(inv: WireInvoice): void {
    if (inv.amount_due > 0) {
      // Since API 2025-03-31 an invoice names no payment intent or charge: its payments are
      // `invoice_payment` objects (GET /v1/invoice_payments?invoice=…), each naming the payment intent.
      const { intent } = recordPayment({
        amount: inv.amount_due,
        currency: inv.currency,
        customerId: idOf(inv.customer ?? ''),
        metadata: {},
      });
      const payment = buildInvoicePayment({
        invoiceId: inv.id,
        amount: inv.amount_due,
        currency: inv.currency,
        paymentIntentId: intent.id,
        created: now,
      });
      invoicePayments.set(payment.id, payment);
    }
    inv.status = 'paid';
    inv.amount_paid = inv.amount_due;
    inv.amount_remaining = 0;
    inv.status_transitions.paid_at = now;
    inv.next_payment_attempt = null;
    const cust = customers.get(idOf(inv.customer ?? ''));
    if (cust) cust.delinquent = false;
  }

  /** One automatic payment attempt with the customer's card; true when the invoice is now paid. */
  function attemptPayment(inv: WireInvoice): boolean {
    const customerId = idOf(inv.customer ?? '');
    if (inv.amount_due === 0) {
      markPaid(inv);
      return true;
    }
    inv.attempted = true;
    inv.attempt_count += 1;
    if (failingCustomers.has(customerId)) {
      inv.next_payment_attempt = inv.attempt_count < MAX_AUTOMATIC_ATTEMPTS ? now + RETRY_DELAY : null;
      const cust = customers.get(customerId);
      if (cust) cust.delinquent = true;
      return false;
    }
    markPaid(inv);
    return true;
  }

  /** Finalizes a fresh draft and collects it, capturing the events Stripe sends along the way. */
  function finalizeAndCollect(inv: WireInvoice, attempt: boolean): { paid: boolean; pending: Pending[] } {
    const pending = [snap('invoice.created', inv)];
    finalize(inv);
    pending.push(snap('invoice.finalized', inv));
    if (!attempt) return { paid: false, pending };
    const paid = attemptPayment(inv);
    if (paid) pending.push(snap('invoice.paid', inv), snap('invoice.payment_succeeded', inv));
    else pending.push(snap('invoice.payment_failed', inv));
    return { paid, pending };
  }

  function openInvoicesOf(subId: string): WireInvoice[] {
    return [...invoices.values()].filter(
      (inv) => inv.status === 'open' && inv.parent?.subscription_details?.subscription === subId,
    );
  }

  // ---- subscription items and prorations -------------------------------------------------------------

  function validateItems(sub: WireSubscription, targets: readonly ItemTarget[], param: string): void {
    if (targets.length === 0) throw invalidRequest('A subscription needs at least one item.', param);
    const key = intervalKey(targets);
    for (const target of targets) {
      if (target.price.currency !== sub.currency) {
        throw invalidRequest(
          `Currency and interval fields must match across all plans on this subscription. Found mismatch in currency: ${target.price.currency} vs ${sub.currency}.`,
          param,
        );
      }
      if (intervalKey([target]) !== key) {
        throw invalidRequest(
          'Currency and interval fields must match across all plans on this subscription. Found mismatch in interval field.',
          param,
        );
      }
    }
  }

  /** Replaces the subscription's items, keeping item ids where an item is updated in place. */
  function setItems(sub: WireSubscription, targets: readonly ItemTarget[]): ItemChange[] {
    const { start, end } = periodOf(sub);
    const changes: ItemChange[] = [];
    const next = targets.map((target) => {
      const existing = target.existing;
      if (existing) {
        const before = { price: existing.price, quantity: existing.quantity ?? 1 };
        if (before.price.id !== target.price.id || before.quantity !== target.quantity) {
          changes.push({
            itemId: existing.id,
            before,
            after: { price: target.price, quantity: target.quantity },
          });
        }
        existing.price = target.price;
        existing.plan = planOf(target.price);
        existing.quantity = target.quantity;
        return existing;
      }
      const item = buildSubscriptionItem({
        subscriptionId: sub.id,
        price: target.price,
        quantity: target.quantity,
        created: now,
        periodStart: start,
        periodEnd: end,
      });
      changes.push({
        itemId: item.id,
        before: null,
        after: { price: target.price, quantity: target.quantity },
      });
      return item;
    });
    for (const old of sub.items.data) {
      if (!next.includes(old)) {
        changes.push({
          itemId: old.id,
          before: { price: old.price, quantity: old.quantity ?? 1 },
          after: null,
        });
      }
    }
    sub.items.data = next;
    return changes;
  }

  /**
   * Stripe's proration for a change at `at`: a credit for the unused time of what was there and a charge
   * for the remaining time of what replaces it, each `amount × remaining / period`.
   */
  function prorationLines(
    sub: WireSubscription,
    changes: readonly ItemChange[],
    period: { start: number; end: number },
    at: number,
    credits: 'credits_and_charges' | 'credits_only',
  ): LineDraft[] {
    if (at >= period.end || period.end <= period.start) return [];
    const fraction = (period.end - Math.max(at, period.start)) / (period.end - period.start);
    const lines: LineDraft[] = [];
    for (const change of changes) {
      if (change.before) {
        const { price: p, quantity } = change.before;
        lines.push({
          amount: -Math.round(unitAmount(p) * quantity * fraction),
          currency: sub.currency,
          description: `Unused time on ${quantity} × ${productName(p)} after ${dateLabel(at)}`,
          price: p,
          quantity,
          periodStart: at,
          periodEnd: period.end,
          subscriptionItemId: change.itemId,
          proration: true,
        });
      }
      if (change.after && credits === 'credits_and_charges') {
        const { price: p, quantity } = change.after;
        lines.push({
          amount: Math.round(unitAmount(p) * quantity * fraction),
          currency: sub.currency,
          description: `Remaining time on ${quantity} × ${productName(p)} after ${dateLabel(at)}`,
          price: p,
          quantity,
          periodStart: at,
          periodEnd: period.end,
          subscriptionItemId: change.itemId,
          proration: true,
        });
      }
    }
    return lines;
  }

  function cycleLines(sub: WireSubscription): LineDraft[] {
    return sub.items.data.map((item) => {
      const quantity = item.quantity ?? 1;
      const { interval } = recurringOf(item.price);
      return {
        amount: unitAmount(item.price) * quantity,
        currency: sub.currency,
        description: `${quantity} × ${productName(item.price)} (at ${formatAmount(unitAmount(item.price), sub.currency)} / ${interval})`,
        price: item.price,
        quantity,
        periodStart: item.current_period_start,
        periodEnd: item.current_period_end,
        subscriptionItemId: item.id,
        proration: false,
      };
    });
  }

  function setPeriod(sub: WireSubscription, start: number, end: number): void {
    for (const item of sub.items.data) {
      item.current_period_start = start;
      item.current_period_end = end;
    }
  }

  /**
   * Applies new items now, billing per `behavior`. A change of interval restarts the billing cycle today
   * and invoices at once (credit for the unused old period, the full new period), as Stripe does.
   */
  function applyItemChange(
    rec: SubscriptionRecord,
    targets: readonly ItemTarget[],
    behavior: ProrationBehavior,
    at: number,
  ): { changes: ItemChange[]; invoiceDrafts: LineDraft[] | null; restartedCycle: boolean } {
    const sub = rec.sub;
    const period = periodOf(sub);
    const oldKey = intervalKey(sub.items.data);
    const changes = setItems(sub, targets);
    if (changes.length === 0) return { changes, invoiceDrafts: null, restartedCycle: false };
    if (intervalKey(sub.items.data) !== oldKey) {
      const credits = behavior === 'none' ? [] : prorationLines(sub, changes, period, at, 'credits_only');
      const first = sub.items.data[0];
      if (!first) throw new Error('no items');
      const { interval, count } = recurringOf(first.price);
      sub.billing_cycle_anchor = at;
      setPeriod(sub, at, addInterval(at, interval, count));
      const drafts = [...credits, ...rec.pending.splice(0), ...cycleLines(sub)];
      return { changes, invoiceDrafts: drafts, restartedCycle: true };
    }
    if (behavior === 'none') return { changes, invoiceDrafts: null, restartedCycle: false };
    const lines = prorationLines(sub, changes, period, at, 'credits_and_charges');
    if (behavior === 'create_prorations') {
      rec.pending.push(...lines);
      return { changes, invoiceDrafts: null, restartedCycle: false };
    }
    return { changes, invoiceDrafts: [...rec.pending.splice(0), ...lines], restartedCycle: false };
  }

  // ---- customers, checkout, portal ------------------------------------------------------------------

  function createCustomer(
    params: { email?: string; name?: string; description?: string; phone?: string; metadata?: MetadataParam },
    ctx: RequestContext,
  ): WireCustomer {
    const cust = buildCustomer({
      id: ids.customer(),
      created: now,
      email: params.email ?? null,
      name: params.name ?? null,
      description: params.description ?? null,
      phone: params.phone ?? null,
      metadata: freshMetadata(params.metadata),
    });
    customers.set(cust.id, cust);
    publish(ctx, [snap('customer.created', cust)]);
    return cust;
  }

  function createCheckoutSession(params: CheckoutCreateParams): WireCheckoutSession {
    if (params.customer !== undefined && params.customer_email !== undefined) {
      throw invalidRequest(
        'You may only specify one of these parameters: customer, customer_email.',
        'customer_email',
      );
    }
    if (params.ui_mode !== undefined && params.ui_mode !== 'hosted_page') {
      throw invalidRequest(
        `The sandbox serves only hosted Checkout pages (ui_mode hosted_page), not ${params.ui_mode}.`,
        'ui_mode',
      );
    }
    if (params.customer !== undefined) customer(params.customer, 'customer');
    const lineItems = params.line_items.map((line, i) => ({
      price: price(line.price, `line_items[${i}][price]`),
      quantity: line.quantity,
    }));
    const currencies = new Set(lineItems.map((line) => line.price.currency));
    if (currencies.size > 1) {
      throw invalidRequest('All prices on a Checkout Session must use the same currency.', 'line_items');
    }
    if (params.mode === 'subscription') {
      if (!lineItems.some((line) => line.price.recurring)) {
        throw invalidRequest(
          'You must provide at least one recurring price in `subscription` mode when using prices.',
          'line_items',
        );
      }
      const recurring = lineItems.filter((line) => line.price.recurring);
      if (new Set(recurring.map((line) => intervalKey([line]))).size > 1) {
        throw invalidRequest(
          'All recurring prices on a Checkout Session must share one interval.',
          'line_items',
        );
      }
    } else {
      const index = lineItems.findIndex((line) => line.price.recurring);
      if (index !== -1) {
        throw invalidRequest(
          'You specified `payment` mode but passed a recurring price. Either switch to `subscription` mode or use only one-time prices.',
          `line_items[${index}][price]`,
        );
      }
    }
    if (params.subscription_data && params.mode !== 'subscription') {
      throw invalidRequest(
        'You can only pass `subscription_data` in `subscription` mode.',
        'subscription_data',
      );
    }
    if (params.payment_intent_data && params.mode !== 'payment') {
      throw invalidRequest(
        'You can only pass `payment_intent_data` in `payment` mode.',
        'payment_intent_data',
      );
    }
    const id = ids.checkoutSession();
    const session = buildCheckoutSession({
      id,
      url: `${options.baseUrl()}/checkout/${id}`,
      mode: params.mode,
      customerId: params.customer ?? null,
      customerEmail: params.customer_email ?? null,
      amountTotal: lineItems.reduce((sum, line) => sum + unitAmount(line.price) * line.quantity, 0),
      currency: lineItems[0]?.price.currency ?? 'usd',
      metadata: freshMetadata(params.metadata),
      clientReferenceId: params.client_reference_id ?? null,
      successUrl: params.success_url ?? null,
      cancelUrl: params.cancel_url ?? null,
      allowPromotionCodes: params.allow_promotion_codes ?? null,
      created: now,
    });
    sessions.set(id, {
      session,
      lineItems,
      lineItemObjects: lineItems.map((line) =>
        buildCheckoutLineItem(line.price, line.quantity, productName(line.price)),
      ),
      subscriptionMetadata: freshMetadata(params.subscription_data?.metadata),
      paymentIntentMetadata: freshMetadata(params.payment_intent_data?.metadata),
    });
    return session;
  }

  /** The "Pay" button of the hosted page: charges the card, then creates what the session sells. */
  function payCheckout(id: string): WireCheckoutSession {
    const rec = sessionRecord(id);
    const session = rec.session;
    if (session.status === 'complete') {
      throw invalidRequest(
        'This Checkout Session has already been completed.',
        undefined,
        'checkout_session_completed',
      );
    }
    if (session.status === 'expired') {
      throw invalidRequest('This Checkout Session has expired.', undefined, 'checkout_session_expired');
    }
    const existingId = session.customer === null ? null : idOf(session.customer);
    if (existingId !== null && failingCustomers.has(existingId)) throw cardDeclined();

    const pending: Pending[] = [];
    let cust: WireCustomer;
    if (existingId !== null) cust = customer(existingId);
    else {
      cust = buildCustomer({
        id: ids.customer(),
        created: now,
        email: session.customer_email ?? null,
        name: null,
        description: null,
        phone: null,
        metadata: {},
      });
      customers.set(cust.id, cust);
      pending.push(snap('customer.created', cust));
    }
    const pm = paymentMethodOf(cust.id);
    cust.invoice_settings.default_payment_method = cust.invoice_settings.default_payment_method ?? pm;

    if (session.mode === 'subscription') {
      const subId = ids.subscription();
      const recurring = rec.lineItems.filter((line) => line.price.recurring);
      const first = recurring[0];
      if (!first) throw new Error('subscription checkout without a recurring price');
      const { interval, count } = recurringOf(first.price);
      const end = addInterval(now, interval, count);
      const sub = buildSubscription({
        id: subId,
        customerId: cust.id,
        currency: first.price.currency,
        created: now,
        items: recurring.map((line) =>
          buildSubscriptionItem({
            subscriptionId: subId,
            price: line.price,
            quantity: line.quantity,
            created: now,
            periodStart: now,
            periodEnd: end,
          }),
        ),
        metadata: { ...rec.subscriptionMetadata },
        defaultPaymentMethod: pm,
      });
      const subRec: SubscriptionRecord = { sub, pending: [] };
      subscriptions.set(subId, subRec);
      const inv = createInvoice(subRec, cycleLines(sub), 'subscription_create', { start: now, end: now });
      pending.push(snap('customer.subscription.created', sub));
      const collected = finalizeAndCollect(inv, true);
      pending.push(...collected.pending);
      session.subscription = subId;
      session.invoice = inv.id;
    } else {
      const { intent } = recordPayment({
        amount: session.amount_total ?? 0,
        currency: session.currency ?? 'usd',
        customerId: cust.id,
        metadata: rec.paymentIntentMetadata,
      });
      pending.push(snap('payment_intent.succeeded', intent));
      session.payment_intent = intent.id;
    }
    session.customer = cust.id;
    session.status = 'complete';
    session.payment_status = 'paid';
    session.customer_details = {
      address: null,
      business_name: null,
      email: cust.email,
      individual_name: null,
      name: cust.name ?? null,
      phone: null,
      tax_exempt: 'none',
      tax_ids: [],
    };
    pending.push(snap('checkout.session.completed', session));
    publish(AUTOMATIC, pending);
    return session;
  }

  function createPortalSession(params: { customer: string; return_url?: string }, ctx: RequestContext) {
    customer(params.customer, 'customer');
    const id = ids.portalSession();
    const session = buildPortalSession({
      id,
      url: `${options.baseUrl()}/portal/${id}`,
      configuration: portalConfiguration,
      customerId: params.customer,
      returnUrl: params.return_url ?? null,
      created: now,
    });
    portalSessions.set(id, session);
    publish(ctx, [snap('billing_portal.session.created', session)]);
    return session;
  }

  // ---- subscriptions --------------------------------------------------------------------------------

  function endSubscription(sub: WireSubscription, at: number): void {
    sub.status = 'canceled';
    sub.ended_at = at;
    sub.canceled_at = sub.canceled_at ?? at;
    // Stripe leaves cancel_at_period_end and cancel_at as they were on the ended subscription: a
    // subscription canceled at period end still says `cancel_at_period_end: true` once deleted.
    sub.pause_collection = null;
  }

  function updateSubscription(
    id: string,
    params: SubscriptionUpdateParams,
    ctx: RequestContext,
  ): WireSubscription {
    const rec = subscriptionRecord(id);
    const sub = rec.sub;
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      const allowed = new Set(['metadata', 'expand']);
      const other = Object.keys(params).find((key) => !allowed.has(key));
      if (other !== undefined) {
        throw invalidRequest(
          'A canceled subscription can only update its cancellation_details and metadata.',
          other,
        );
      }
    }
    if (params.cancel_at_period_end !== undefined && sub.schedule !== null) {
      throw invalidRequest(
        `The subscription is managed by the subscription schedule \`${idOf(sub.schedule)}\`, and updating any cancelation behavior directly is not allowed. Please update the schedule instead.`,
        'cancel_at_period_end',
      );
    }
    const before = structuredClone(sub);
    const pendingBefore = [...rec.pending];
    const invoicePending: Pending[] = [];

    let drafts: LineDraft[] | null = null;
    if (params.items) {
      const targets: ItemTarget[] = sub.items.data.map((item) => ({
        existing: item,
        price: item.price,
        quantity: item.quantity ?? 1,
      }));
      params.items.forEach((param, i) => {
        if (param.id !== undefined) {
          const target = targets.find((t) => t.existing?.id === param.id);
          if (!target) throw missing('subscription item', param.id, `items[${i}][id]`);
          if (param.price !== undefined) target.price = recurringPrice(param.price, `items[${i}][price]`);
          if (param.quantity !== undefined) target.quantity = param.quantity;
        } else {
          if (param.price === undefined) {
            throw invalidRequest(
              `Missing required param: items[${i}][price].`,
              `items[${i}][price]`,
              'parameter_missing',
            );
          }
          targets.push({
            existing: null,
            price: recurringPrice(param.price, `items[${i}][price]`),
            quantity: param.quantity ?? 1,
          });
        }
      });
      validateItems(sub, targets, 'items');
      drafts = applyItemChange(
        rec,
        targets,
        params.proration_behavior ?? 'create_prorations',
        now,
      ).invoiceDrafts;
    }
    if (params.cancel_at_period_end !== undefined) {
      sub.cancel_at_period_end = params.cancel_at_period_end;
      sub.cancel_at = params.cancel_at_period_end ? periodOf(sub).end : null;
      sub.canceled_at = params.cancel_at_period_end ? now : null;
      sub.cancellation_details = {
        comment: null,
        feedback: null,
        feedback_option: null,
        reason: params.cancel_at_period_end ? 'cancellation_requested' : null,
      };
    }
    if (params.metadata !== undefined) sub.metadata = mergeMetadata(sub.metadata, params.metadata);
    if (params.pause_collection !== undefined) {
      sub.pause_collection =
        params.pause_collection === ''
          ? null
          : {
              behavior: params.pause_collection.behavior,
              resumes_at: params.pause_collection.resumes_at ?? null,
            };
    }

    if (drafts !== null) {
      const amount = drafts.reduce((sum, line) => sum + line.amount, 0);
      const customerId = idOf(sub.customer);
      if (
        params.payment_behavior === 'error_if_incomplete' &&
        amount > 0 &&
        failingCustomers.has(customerId)
      ) {
        rec.sub = before;
        rec.pending = pendingBefore;
        throw cardDeclined();
      }
      const inv = createInvoice(rec, drafts, 'subscription_update', { start: now, end: now });
      const collected = finalizeAndCollect(inv, true);
      invoicePending.push(...collected.pending);
      if (!collected.paid) sub.status = 'past_due';
    }

    const previous = changedFields(before, sub);
    publish(ctx, [
      ...(previous ? [snap('customer.subscription.updated', sub, previous)] : []),
      ...invoicePending,
    ]);
    return sub;
  }

  function cancelSubscription(
    id: string,
    params: { cancellation_details?: { comment?: string; feedback?: string } },
    ctx: RequestContext,
  ): WireSubscription {
    const rec = subscriptionRecord(id);
    const sub = rec.sub;
    if (sub.status === 'canceled') {
      throw invalidRequest(`This subscription (${id}) has already been canceled.`);
    }
    endSubscription(sub, now);
    sub.canceled_at = now;
    sub.cancellation_details = {
      comment: params.cancellation_details?.comment ?? null,
      feedback: params.cancellation_details?.feedback ?? null,
      feedback_option: null,
      reason: 'cancellation_requested',
    };
    rec.pending = [];
    const pending = [snap('customer.subscription.deleted', sub)];
    if (sub.schedule !== null) {
      const schedRec = schedules.get(idOf(sub.schedule));
      if (schedRec && (schedRec.schedule.status === 'active' || schedRec.schedule.status === 'not_started')) {
        schedRec.schedule.status = 'canceled';
        schedRec.schedule.canceled_at = now;
        schedRec.schedule.current_phase = null;
        pending.push(snap('subscription_schedule.canceled', schedRec.schedule));
      }
    }
    publish(ctx, pending);
    return sub;
  }

  // ---- schedules ------------------------------------------------------------------------------------

  function phaseAt(schedule: WireSchedule, at: number): WirePhase | undefined {
    return schedule.phases.find((phase) => phase.start_date <= at && at < phase.end_date);
  }

  function refreshCurrentPhase(schedule: WireSchedule): void {
    const phase = phaseAt(schedule, now);
    schedule.current_phase = phase ? { start_date: phase.start_date, end_date: phase.end_date } : null;
  }

  function phaseTargets(sub: WireSubscription, phase: WirePhase): ItemTarget[] {
    const remaining = [...sub.items.data];
    return phase.items.map((item) => {
      const p = price(idOf(item.price));
      const index = remaining.findIndex((existing) => existing.price.id === p.id);
      const existing = index === -1 ? null : (remaining.splice(index, 1)[0] ?? null);
      return { existing, price: p, quantity: item.quantity ?? 1 };
    });
  }

  function createSchedule(
    params: { from_subscription: string; metadata?: MetadataParam },
    ctx: RequestContext,
  ) {
    const rec = subscriptionRecord(params.from_subscription, 'from_subscription');
    const sub = rec.sub;
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      throw invalidRequest(`You cannot migrate a canceled subscription (${sub.id}).`, 'from_subscription');
    }
    if (sub.schedule !== null) {
      throw invalidRequest(
        `You cannot migrate a subscription that is already attached to a schedule: \`${idOf(sub.schedule)}\`.`,
        'from_subscription',
      );
    }
    if (sub.cancel_at_period_end || sub.cancel_at !== null) {
      throw invalidRequest(
        'The sandbox does not migrate a subscription that is set to cancel; clear cancel_at_period_end first.',
        'from_subscription',
      );
    }
    const period = periodOf(sub);
    const phase = buildPhase({
      items: sub.items.data.map((item) => ({ price: item.price, quantity: item.quantity ?? 1 })),
      startDate: period.start,
      endDate: period.end,
      prorationBehavior: 'create_prorations',
      metadata: {},
    });
    const schedule = buildSchedule({
      id: ids.schedule(),
      subscriptionId: sub.id,
      customerId: idOf(sub.customer),
      created: now,
      endBehavior: 'release',
      phases: [phase],
      currentPhase: { start_date: period.start, end_date: period.end },
    });
    schedule.metadata = freshMetadata(params.metadata);
    schedules.set(schedule.id, { schedule, processedUntil: now });
    const before = structuredClone(sub);
    sub.schedule = schedule.id;
    publish(ctx, [
      snap('subscription_schedule.created', schedule),
      snap('customer.subscription.updated', sub, changedFields(before, sub)),
    ]);
    return schedule;
  }

  function resolvePhases(
    schedule: WireSchedule,
    sub: WireSubscription,
    phases: readonly PhaseParams[],
  ): WirePhase[] {
    const resolved: WirePhase[] = [];
    let previousEnd: number | null = null;
    phases.forEach((phase, i) => {
      const param = `phases[${i}]`;
      const items = phase.items.map((item, j) => ({
        price: recurringPrice(item.price, `${param}[items][${j}][price]`),
        quantity: item.quantity ?? 1,
      }));
      validateItems(
        sub,
        items.map((item) => ({ existing: null, ...item })),
        `${param}[items]`,
      );
      let start: number;
      if (phase.start_date !== undefined) {
        start = phase.start_date === 'now' ? now : phase.start_date;
        if (previousEnd !== null && start !== previousEnd) {
          throw invalidRequest(
            `Phase ${i} must start when phase ${i - 1} ends (${previousEnd}); leave start_date out after the first phase.`,
            `${param}[start_date]`,
          );
        }
      } else {
        start = previousEnd ?? schedule.current_phase?.start_date ?? now;
      }
      let end: number;
      if (phase.end_date !== undefined) end = phase.end_date === 'now' ? now : phase.end_date;
      else if (phase.duration)
        end = addInterval(start, phase.duration.interval, phase.duration.interval_count ?? 1);
      else {
        const first = items[0];
        if (!first) throw invalidRequest('A phase needs at least one item.', `${param}[items]`);
        const { interval, count } = recurringOf(first.price);
        end = addInterval(start, interval, count);
      }
      if (phase.end_date !== undefined && phase.duration) {
        throw invalidRequest('You may pass only one of end_date and duration.', `${param}[end_date]`);
      }
      if (end <= start) throw invalidRequest('A phase must end after it starts.', `${param}[end_date]`);
      resolved.push(
        buildPhase({
          items,
          startDate: start,
          endDate: end,
          prorationBehavior: phase.proration_behavior ?? 'create_prorations',
          metadata: freshMetadata(phase.metadata),
        }),
      );
      previousEnd = end;
    });
    const current = schedule.current_phase;
    const first = resolved[0];
    // Stripe keeps the phases that have started: the update's first phase must be the current one,
    // starting exactly when it started (a schedule made in the Dashboard may start it mid-period).
    if (current && first && current.start_date <= now && first.start_date !== current.start_date) {
      throw invalidRequest(
        'You can not modify the start date of the current phase.',
        'phases[0][start_date]',
      );
    }
    return resolved;
  }

  function updateSchedule(id: string, params: ScheduleUpdateParams, ctx: RequestContext): WireSchedule {
    const schedRec = scheduleRecord(id);
    const schedule = schedRec.schedule;
    if (schedule.status !== 'active' && schedule.status !== 'not_started') {
      throw invalidRequest(
        `You cannot update a subscription schedule that is currently in the \`${schedule.status}\` status. It must be in one of the following statuses: \`not_started\`, \`active\`.`,
      );
    }
    const subId = schedule.subscription === null ? null : idOf(schedule.subscription);
    const rec = subId === null ? undefined : subscriptions.get(subId);
    if (!rec) throw invalidRequest(`Subscription schedule ${id} has no subscription.`);
    const sub = rec.sub;
    const before = structuredClone(sub);
    const pending: Pending[] = [];
    if (params.phases) schedule.phases = resolvePhases(schedule, sub, params.phases);
    if (params.end_behavior !== undefined) {
      schedule.end_behavior = params.end_behavior === 'renew' ? 'release' : params.end_behavior;
    }
    if (params.metadata !== undefined)
      schedule.metadata = mergeMetadata(schedule.metadata ?? {}, params.metadata);
    refreshCurrentPhase(schedule);

    // A current phase whose items differ from the subscription's takes effect now.
    let invoicePending: Pending[] = [];
    const current = phaseAt(schedule, now);
    if (current) {
      const behavior = params.proration_behavior ?? current.proration_behavior;
      const targets = phaseTargets(sub, current);
      validateItems(sub, targets, 'phases');
      const { invoiceDrafts } = applyItemChange(rec, targets, prorationOf(behavior), now);
      if (invoiceDrafts) {
        const inv = createInvoice(rec, invoiceDrafts, 'subscription_update', { start: now, end: now });
        const collected = finalizeAndCollect(inv, true);
        invoicePending = collected.pending;
        if (!collected.paid) sub.status = 'past_due';
      }
    }
    schedRec.processedUntil = Math.max(schedRec.processedUntil, now);
    pending.push(snap('subscription_schedule.updated', schedule));
    const previous = changedFields(before, sub);
    if (previous) pending.push(snap('customer.subscription.updated', sub, previous));
    publish(ctx, [...pending, ...invoicePending]);
    return schedule;
  }

  function releaseSchedule(id: string, ctx: RequestContext): WireSchedule {
    const schedRec = scheduleRecord(id);
    const schedule = schedRec.schedule;
    if (schedule.status !== 'active' && schedule.status !== 'not_started') {
      throw invalidRequest(
        `You cannot release a subscription schedule that is currently in the \`${schedule.status}\` status. It must be in one of the following statuses: \`not_started\`, \`active\`.`,
      );
    }
    const pending = releaseInternal(schedRec);
    publish(ctx, pending);
    return schedule;
  }

  function releaseInternal(schedRec: ScheduleRecord): Pending[] {
    const schedule = schedRec.schedule;
    const subId = schedule.subscription === null ? null : idOf(schedule.subscription);
    schedule.status = 'released';
    schedule.released_at = now;
    schedule.released_subscription = subId;
    schedule.subscription = null;
    schedule.current_phase = null;
    const pending = [snap('subscription_schedule.released', schedule)];
    const rec = subId === null ? undefined : subscriptions.get(subId);
    if (rec && rec.sub.schedule !== null) {
      const before = structuredClone(rec.sub);
      rec.sub.schedule = null;
      pending.push(snap('customer.subscription.updated', rec.sub, changedFields(before, rec.sub)));
    }
    return pending;
  }

  // ---- the clock ------------------------------------------------------------------------------------

  type Occurrence =
    | { kind: 'session'; at: number; rec: SessionRecord }
    | { kind: 'renewal'; at: number; rec: SubscriptionRecord }
    | { kind: 'phase'; at: number; rec: ScheduleRecord };

  const KIND_ORDER = { session: 0, renewal: 1, phase: 2 } as const;

  function scheduleBoundaryAfter(schedRec: ScheduleRecord): number | undefined {
    let next: number | undefined;
    for (const phase of schedRec.schedule.phases) {
      for (const at of [phase.start_date, phase.end_date]) {
        if (at > schedRec.processedUntil && (next === undefined || at < next)) next = at;
      }
    }
    return next;
  }

  function nextOccurrence(limit: number): Occurrence | undefined {
    const candidates: Occurrence[] = [];
    for (const rec of sessions.values()) {
      if (rec.session.status === 'open' && rec.session.expires_at <= limit) {
        candidates.push({ kind: 'session', at: rec.session.expires_at, rec });
      }
    }
    for (const rec of subscriptions.values()) {
      const status = rec.sub.status;
      if (status === 'canceled' || status === 'incomplete_expired' || status === 'paused') continue;
      const end = periodOf(rec.sub).end;
      if (end <= limit) candidates.push({ kind: 'renewal', at: end, rec });
    }
    for (const rec of schedules.values()) {
      if (rec.schedule.status !== 'active' && rec.schedule.status !== 'not_started') continue;
      const at = scheduleBoundaryAfter(rec);
      if (at !== undefined && at <= limit) candidates.push({ kind: 'phase', at, rec });
    }
    candidates.sort((a, b) => a.at - b.at || KIND_ORDER[a.kind] - KIND_ORDER[b.kind]);
    return candidates[0];
  }

  /** What the schedule does at `at` for its subscription; returns the events to send after the renewal. */
  function scheduleStep(
    schedRec: ScheduleRecord,
    rec: SubscriptionRecord,
    at: number,
    atPeriodEnd: boolean,
  ): { pending: Pending[]; invoicePending: Pending[]; canceled: boolean } {
    const schedule = schedRec.schedule;
    schedRec.processedUntil = Math.max(schedRec.processedUntil, at);
    const phase = phaseAt(schedule, at);
    const pending: Pending[] = [];
    let invoicePending: Pending[] = [];
    if (phase && phase.start_date === at) {
      const targets = phaseTargets(rec.sub, phase);
      if (atPeriodEnd) {
        // At the boundary the old items are fully billed: switch without prorating.
        const oldKey = intervalKey(rec.sub.items.data);
        setItems(rec.sub, targets);
        if (intervalKey(rec.sub.items.data) !== oldKey) rec.sub.billing_cycle_anchor = at;
      } else {
        const behavior = phase.proration_behavior;
        const { invoiceDrafts } = applyItemChange(rec, targets, prorationOf(behavior), at);
        if (invoiceDrafts) {
          const inv = createInvoice(rec, invoiceDrafts, 'subscription_update', { start: at, end: at });
          const collected = finalizeAndCollect(inv, true);
          invoicePending = collected.pending;
          if (!collected.paid) rec.sub.status = 'past_due';
        }
      }
      refreshCurrentPhase(schedule);
      pending.push(snap('subscription_schedule.updated', schedule));
      return { pending, invoicePending, canceled: false };
    }
    const lastEnd = Math.max(...schedule.phases.map((p) => p.end_date));
    if (!phase && at >= lastEnd) {
      if (schedule.end_behavior === 'cancel') {
        schedule.status = 'completed';
        schedule.completed_at = at;
        schedule.current_phase = null;
        endSubscription(rec.sub, at);
        rec.sub.cancellation_details = { comment: null, feedback: null, feedback_option: null, reason: null };
        pending.push(snap('subscription_schedule.completed', schedule));
        return { pending, invoicePending, canceled: true };
      }
      // `release` (and `none`): the subscription carries on with the last phase's items.
      schedule.status = 'released';
      schedule.released_at = at;
      schedule.released_subscription = rec.sub.id;
      schedule.subscription = null;
      schedule.current_phase = null;
      rec.sub.schedule = null;
      pending.push(snap('subscription_schedule.released', schedule));
      return { pending, invoicePending, canceled: false };
    }
    refreshCurrentPhase(schedule);
    return { pending, invoicePending, canceled: false };
  }

  function renew(rec: SubscriptionRecord, at: number): Pending[] {
    const sub = rec.sub;
    const before = structuredClone(sub);
    if (sub.cancel_at_period_end || (sub.cancel_at !== null && sub.cancel_at <= at)) {
      endSubscription(sub, at);
      rec.pending = [];
      return [snap('customer.subscription.deleted', sub)];
    }
    let schedulePending: Pending[] = [];
    if (sub.schedule !== null) {
      const schedRec = schedules.get(idOf(sub.schedule));
      if (schedRec && (schedRec.schedule.status === 'active' || schedRec.schedule.status === 'not_started')) {
        const step = scheduleStep(schedRec, rec, at, true);
        schedulePending = step.pending;
        if (step.canceled) return [snap('customer.subscription.deleted', sub), ...schedulePending];
      }
    }
    const first = sub.items.data[0];
    if (!first) throw new Error(`subscription ${sub.id} has no items`);
    const { interval, count } = recurringOf(first.price);
    const previousPeriod = periodOf(before);
    setPeriod(sub, at, nextBoundary(sub.billing_cycle_anchor, interval, count, at));
    if (sub.pause_collection?.resumes_at !== null && sub.pause_collection?.resumes_at !== undefined) {
      if (sub.pause_collection.resumes_at <= at) sub.pause_collection = null;
    }

    // Stripe's renewal invoice covers the period that just ended in `period_start/end`; its lines carry
    // the new period.
    const inv = createInvoice(
      rec,
      [...rec.pending.splice(0), ...cycleLines(sub)],
      'subscription_cycle',
      previousPeriod,
    );
    let invoicePending: Pending[];
    const pause = sub.pause_collection;
    if (pause) {
      invoicePending = [snap('invoice.created', inv)];
      if (pause.behavior === 'void') {
        finalize(inv);
        inv.status = 'void';
        inv.amount_remaining = 0;
        inv.status_transitions.voided_at = at;
        invoicePending.push(snap('invoice.finalized', inv), snap('invoice.voided', inv));
      } else if (pause.behavior === 'mark_uncollectible') {
        finalize(inv);
        inv.status = 'uncollectible';
        inv.status_transitions.marked_uncollectible_at = at;
        invoicePending.push(snap('invoice.finalized', inv), snap('invoice.marked_uncollectible', inv));
      }
    } else {
      const collected = finalizeAndCollect(inv, sub.status !== 'unpaid');
      invoicePending = collected.pending;
      if (collected.paid && sub.status === 'past_due' && openInvoicesOf(sub.id).length === 0)
        sub.status = 'active';
      if (!collected.paid && sub.status === 'active') sub.status = 'past_due';
    }
    const previous = changedFields(before, sub);
    return [
      ...invoicePending,
      ...(previous ? [snap('customer.subscription.updated', sub, previous)] : []),
      ...schedulePending,
    ];
  }

  function midPeriodPhase(schedRec: ScheduleRecord, at: number): Pending[] {
    const subId = schedRec.schedule.subscription === null ? null : idOf(schedRec.schedule.subscription);
    const rec = subId === null ? undefined : subscriptions.get(subId);
    if (!rec || rec.sub.status === 'canceled') {
      schedRec.processedUntil = at;
      return [];
    }
    const before = structuredClone(rec.sub);
    const step = scheduleStep(schedRec, rec, at, false);
    const previous = changedFields(before, rec.sub);
    if (step.canceled) return [snap('customer.subscription.deleted', rec.sub), ...step.pending];
    return [
      ...(previous ? [snap('customer.subscription.updated', rec.sub, previous)] : []),
      ...step.invoicePending,
      ...step.pending,
    ];
  }

  /** Moves the clock forward, acting on every boundary crossed in time order. */
  function advanceTo(target: number): { from: number; to: number; events: number } {
    if (!Number.isFinite(target) || target < now) {
      throw invalidRequest(
        `The sandbox clock only moves forward (it is at ${new Date(now * 1000).toISOString()}).`,
      );
    }
    const from = now;
    const startCount = events.length;
    for (let guard = 0; guard < 100_000; guard++) {
      const next = nextOccurrence(target);
      if (!next) break;
      now = Math.max(now, next.at);
      if (next.kind === 'session') {
        next.rec.session.status = 'expired';
        next.rec.session.url = null;
        publish(AUTOMATIC, [snap('checkout.session.expired', next.rec.session)]);
      } else if (next.kind === 'renewal') {
        publish(AUTOMATIC, renew(next.rec, next.at));
      } else {
        publish(AUTOMATIC, midPeriodPhase(next.rec, next.at));
      }
    }
    now = target;
    for (const schedRec of schedules.values()) {
      if (schedRec.schedule.status === 'active') refreshCurrentPhase(schedRec.schedule);
    }
    return { from, to: now, events: events.length - startCount };
  }

  // ---- dunning and control ---------------------------------------------------------------------------

  function setPaymentMethod(customerId: string, fails: boolean): void {
    customer(customerId);
    if (fails) failingCustomers.add(customerId);
    else failingCustomers.delete(customerId);
  }

  function retryInvoice(id: string): WireInvoice {
    const inv = invoice(id);
    if (inv.status !== 'open') {
      throw invalidRequest(`Invoice ${id} is ${inv.status ?? 'draft'}; only open invoices can be retried.`);
    }
    const paid = attemptPayment(inv);
    const pending: Pending[] = [];
    if (!paid) {
      pending.push(snap('invoice.payment_failed', inv));
      publish(AUTOMATIC, pending);
      return inv;
    }
    pending.push(snap('invoice.paid', inv), snap('invoice.payment_succeeded', inv));
    const subId = inv.parent?.subscription_details?.subscription;
    const rec = subId === undefined ? undefined : subscriptions.get(idOf(subId));
    if (
      rec &&
      (rec.sub.status === 'past_due' || rec.sub.status === 'unpaid') &&
      openInvoicesOf(rec.sub.id).length === 0
    ) {
      const before = structuredClone(rec.sub);
      rec.sub.status = 'active';
      pending.push(snap('customer.subscription.updated', rec.sub, changedFields(before, rec.sub)));
    }
    publish(AUTOMATIC, pending);
    return inv;
  }

  function forceStatus(id: string, status: ForcedStatus): WireSubscription {
    const rec = subscriptionRecord(id);
    const sub = rec.sub;
    if (sub.status === 'canceled' || sub.status === 'incomplete_expired') {
      throw invalidRequest(`Subscription ${id} is ${sub.status}; its status can no longer change.`);
    }
    if (sub.status === status) return sub;
    const before = structuredClone(sub);
    const wasPaused = sub.status === 'paused';
    sub.status = status;
    if (wasPaused && periodOf(sub).end <= now) {
      // Resuming restarts the billing cycle today, so no stale boundary is billed later.
      const first = sub.items.data[0];
      if (first) {
        const { interval, count } = recurringOf(first.price);
        sub.billing_cycle_anchor = now;
        setPeriod(sub, now, addInterval(now, interval, count));
      }
    }
    const pending = [snap('customer.subscription.updated', sub, changedFields(before, sub))];
    if (status === 'paused') pending.push(snap('customer.subscription.paused', sub));
    if (wasPaused) pending.push(snap('customer.subscription.resumed', sub));
    publish(AUTOMATIC, pending);
    return sub;
  }

  // ---- checkout sessions -----------------------------------------------------------------------------

  function expireSession(id: string, ctx: RequestContext): WireCheckoutSession {
    const session = sessionRecord(id).session;
    if (session.status !== 'open') {
      // Stripe's answer for a complete or already expired session: a 400, nothing changes.
      throw invalidRequest(
        `Only Checkout Sessions with a status in [open] can be expired. This Checkout Session has a status of ${session.status ?? 'open'}.`,
      );
    }
    session.status = 'expired';
    session.url = null;
    publish(ctx, [snap('checkout.session.expired', session)]);
    return session;
  }

  // ---- charges, refunds, disputes -----------------------------------------------------------------

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
      created: now,
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
      created: now,
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

  // ---- reads --------------------------------------------------------------------------------------------

  function newestFirst<T>(values: Iterable<T>): T[] {
    return [...values].reverse();
  }

  return {
    now: () => now,
    lookup,
    events: () => events,
    event: (id: string): WireEvent => found(eventsById, 'event', id),
    customer: (id: string) => customer(id),
    customersById: (id: string) => customers.get(id),
    product,
    price: (id: string) => price(id),
    prices: () => newestFirst(prices.values()),
    productName,
    session: (id: string) => sessionRecord(id).session,
    sessionLines: (id: string) => sessionRecord(id).lineItems,
    portalSession: (id: string): WirePortalSession => found(portalSessions, 'billing_portal.session', id),
    subscription: (id: string) => subscriptionRecord(id).sub,
    subscriptions: () => newestFirst([...subscriptions.values()].map((rec) => rec.sub)),
    schedule: (id: string) => scheduleRecord(id).schedule,
    invoice,
    invoices: () => newestFirst(invoices.values()),
    sessions: () => newestFirst([...sessions.values()].map((rec) => rec.session)),
    paymentIntent: (id: string): WirePaymentIntent => found(paymentIntents, 'payment_intent', id),
    charge: (id: string) => charge(id),
    dispute: (id: string): WireDispute => found(disputes, 'dispute', id),
    disputes: () => newestFirst(disputes.values()),
    refunds: () => newestFirst(refunds.values()),
    invoicePayments: () => newestFirst(invoicePayments.values()),
    expireSession,
    createRefund,
    disputeCharge,
    closeDispute,
    createCustomer,
    createCheckoutSession,
    payCheckout,
    createPortalSession,
    updateSubscription,
    cancelSubscription,
    createSchedule,
    updateSchedule,
    releaseSchedule,
    advanceTo,
    setPaymentMethod,
    retryInvoice,
    forceStatus,
    isFailing: (customerId: string) => failingCustomers.has(customerId),
    markDelivered(eventId: string): void {
      const event = eventsById.get(eventId);
      if (event) event.pending_webhooks = 0;
    },
    /** Number of events emitted so far (for tests and the control API). */
    eventCount: () => sequence,
  };
}
