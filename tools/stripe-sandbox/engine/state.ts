import { noSuch, SandboxError } from '../errors.js';
import type { LineDraft, Metadata } from '../objects.js';
import type { SandboxPriceSeed } from '../types.js';
import {
  ids,
  type WireCharge,
  type WireCheckoutLineItem,
  type WireCheckoutSession,
  type WireCustomer,
  type WireDispute,
  type WireEvent,
  type WireInvoice,
  type WireInvoicePayment,
  type WirePaymentIntent,
  type WirePortalSession,
  type WirePrice,
  type WireProduct,
  type WireRefund,
  type WireSchedule,
  type WireSubscription,
} from '../wire.js';

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

export interface SessionRecord {
  session: WireCheckoutSession;
  readonly lineItems: ReadonlyArray<{ readonly price: WirePrice; readonly quantity: number }>;
  /** The `line_items` list Stripe shows only when expanded (the gateway expands it; its own endpoint is not served). */
  readonly lineItemObjects: WireCheckoutLineItem[];
  readonly subscriptionMetadata: Metadata;
  readonly paymentIntentMetadata: Metadata;
}

export interface SubscriptionRecord {
  sub: WireSubscription;
  /** Proration lines of `create_prorations` updates, billed on the next invoice. */
  pending: LineDraft[];
}

export interface ScheduleRecord {
  schedule: WireSchedule;
  /** Phase boundaries up to here have been acted on. */
  processedUntil: number;
}

/**
 * Everything the sandbox knows, shared by the resource modules: each owns the behaviour of its objects,
 * and they all read and write these stores. `now` moves only with the clock (`clock.ts`).
 */
export interface EngineState {
  readonly options: EngineOptions;
  /** The sandbox clock, in Unix seconds. */
  now: number;
  readonly customers: Map<string, WireCustomer>;
  /** Customers whose card declines (set through the control API). */
  readonly failingCustomers: Set<string>;
  /** Each customer's one card, made on first use. */
  readonly paymentMethods: Map<string, string>;
  readonly products: Map<string, WireProduct>;
  readonly prices: Map<string, WirePrice>;
  readonly sessions: Map<string, SessionRecord>;
  readonly portalSessions: Map<string, WirePortalSession>;
  readonly portalConfiguration: string;
  readonly subscriptions: Map<string, SubscriptionRecord>;
  readonly schedules: Map<string, ScheduleRecord>;
  readonly invoices: Map<string, WireInvoice>;
  readonly paymentIntents: Map<string, WirePaymentIntent>;
  readonly charges: Map<string, WireCharge>;
  readonly refunds: Map<string, WireRefund>;
  readonly disputes: Map<string, WireDispute>;
  readonly invoicePayments: Map<string, WireInvoicePayment>;
  /** Sent invoices whose `invoice.overdue` went out (once each). */
  readonly overdueSent: Set<string>;
  /** Every event, oldest first. */
  readonly events: WireEvent[];
  readonly eventsById: Map<string, WireEvent>;
}

export function createState(options: EngineOptions): EngineState {
  return {
    options,
    now: options.startTime,
    customers: new Map(),
    failingCustomers: new Set(),
    paymentMethods: new Map(),
    products: new Map(),
    prices: new Map(),
    sessions: new Map(),
    portalSessions: new Map(),
    portalConfiguration: ids.portalConfiguration(),
    subscriptions: new Map(),
    schedules: new Map(),
    invoices: new Map(),
    paymentIntents: new Map(),
    charges: new Map(),
    refunds: new Map(),
    disputes: new Map(),
    invoicePayments: new Map(),
    overdueSent: new Set(),
    events: [],
    eventsById: new Map(),
  };
}

/** A missing id in the URL is a 404; one named by a parameter is a 400 (`resource_missing`). */
export function missing(kind: string, id: string, param?: string): SandboxError {
  if (param === undefined) return noSuch(kind, id);
  return new SandboxError(400, 'invalid_request_error', `No such ${kind}: '${id}'`, {
    param,
    code: 'resource_missing',
  });
}

/** The object with this id, or Stripe's "No such …" error (a 404, or a 400 naming the parameter). */
export function found<T>(store: ReadonlyMap<string, T>, kind: string, id: string, param?: string): T {
  const value = store.get(id);
  if (value === undefined) throw missing(kind, id, param);
  return value;
}

/** Stores list newest first, as Stripe's list endpoints do. */
export function newestFirst<T>(values: Iterable<T>): T[] {
  return [...values].reverse();
}
