import { randomBytes } from 'node:crypto';
import type Stripe from 'stripe';

/**
 * An object as it travels as JSON. The SDK's types describe objects after it has decoded them: decimal
 * strings (`unit_amount_decimal`, `quantity_decimal`) become `Stripe.Decimal` instances on the client,
 * but on the wire they are strings. Building the sandbox's objects against `Wire<Stripe.X>` makes the
 * compiler check every field of the pinned API version.
 */
export type Wire<T> = T extends string | number | boolean | null | undefined
  ? T
  : T extends Stripe.Decimal
    ? string
    : T extends ReadonlyArray<infer U>
      ? Array<Wire<U>>
      : T extends object
        ? { -readonly [K in keyof T]: Wire<T[K]> }
        : T;

export type WireCustomer = Wire<Stripe.Customer>;
export type WireProduct = Wire<Stripe.Product>;
export type WirePrice = Wire<Stripe.Price>;
export type WirePlan = Wire<Stripe.Plan>;
export type WireSubscription = Wire<Stripe.Subscription>;
export type WireSubscriptionItem = Wire<Stripe.SubscriptionItem>;
export type WireSchedule = Wire<Stripe.SubscriptionSchedule>;
export type WirePhase = Wire<Stripe.SubscriptionSchedule.Phase>;
export type WireInvoice = Wire<Stripe.Invoice>;
export type WireInvoiceLine = Wire<Stripe.InvoiceLineItem>;
export type WireCheckoutSession = Wire<Stripe.Checkout.Session>;
export type WireCheckoutLineItem = Wire<Stripe.LineItem>;
export type WirePortalSession = Wire<Stripe.BillingPortal.Session>;
export type WirePaymentIntent = Wire<Stripe.PaymentIntent>;
export type WireCharge = Wire<Stripe.Charge>;
export type WireDispute = Wire<Stripe.Dispute>;
export type WireRefund = Wire<Stripe.Refund>;
export type WireInvoicePayment = Wire<Stripe.InvoicePayment>;

/** An event as delivered: the typed union is too narrow for a generic emitter, so `data` is loosened. */
export interface WireEvent {
  id: string;
  object: 'event';
  api_version: string | null;
  created: number;
  data: { object: unknown; previous_attributes?: Record<string, unknown> };
  livemode: false;
  pending_webhooks: number;
  request: { id: string | null; idempotency_key: string | null };
  type: Stripe.Event.Type;
}

export interface WireList<T> {
  object: 'list';
  data: T[];
  has_more: boolean;
  url: string;
}

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

function randomString(length: number, alphabet = ALPHABET): string {
  const bytes = randomBytes(length);
  let out = '';
  for (const byte of bytes) out += alphabet[byte % alphabet.length];
  return out;
}

/** Ids shaped like Stripe's: a type prefix and a random tail (`cus_…`, `sub_sched_…`, `cs_test_…`). */
export function newId(prefix: string, length = 24): string {
  return `${prefix}_${randomString(length)}`;
}

export const ids = {
  customer: () => newId('cus', 14),
  product: () => newId('prod', 14),
  price: () => newId('price'),
  checkoutSession: () => newId('cs_test', 58),
  portalSession: () => newId('bps'),
  portalConfiguration: () => newId('bpc'),
  subscription: () => newId('sub'),
  subscriptionItem: () => newId('si', 14),
  schedule: () => newId('sub_sched'),
  invoice: () => newId('in'),
  invoiceLine: () => newId('il'),
  invoiceItem: () => newId('ii'),
  paymentIntent: () => newId('pi'),
  paymentMethod: () => newId('pm'),
  charge: () => newId('ch'),
  dispute: () => newId('dp'),
  refund: () => newId('re'),
  invoicePayment: () => newId('inpay'),
  event: () => newId('evt'),
  request: () => newId('req', 14),
  checkoutLineItem: () => newId('li'),
  invoicePrefix: () => randomString(8, 'ABCDEF0123456789'),
};

export function list<T>(data: T[], url: string, hasMore = false): WireList<T> {
  return { object: 'list', data, has_more: hasMore, url };
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function idOf(value: string | { id: string }): string;
export function idOf(value: string | { id: string } | null): string | null;
export function idOf(value: string | { id: string } | null): string | null {
  return value === null ? null : typeof value === 'string' ? value : value.id;
}

export const DAY = 86_400;

/**
 * Adds calendar months in UTC the way Stripe bills: the day of the anchor is kept, clamped to the end of
 * shorter months (Jan 31 -> Feb 28 -> Mar 31), so each period end is computed from the anchor itself.
 */
export function addMonths(anchorSeconds: number, months: number): number {
  const anchor = new Date(anchorSeconds * 1000);
  const year = anchor.getUTCFullYear();
  const month = anchor.getUTCMonth() + months;
  const lastDay = new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
  const day = Math.min(anchor.getUTCDate(), lastDay);
  return (
    Date.UTC(year, month, day, anchor.getUTCHours(), anchor.getUTCMinutes(), anchor.getUTCSeconds()) / 1000
  );
}

export type Interval = 'day' | 'week' | 'month' | 'year';

export function addInterval(anchorSeconds: number, interval: Interval, count: number): number {
  switch (interval) {
    case 'day':
      return anchorSeconds + count * DAY;
    case 'week':
      return anchorSeconds + count * 7 * DAY;
    case 'month':
      return addMonths(anchorSeconds, count);
    case 'year':
      return addMonths(anchorSeconds, count * 12);
  }
}

/** The first period boundary after `after`, counting whole intervals from the anchor. */
export function nextBoundary(
  anchor: number,
  interval: Interval,
  intervalCount: number,
  after: number,
): number {
  let n = 1;
  let boundary = addInterval(anchor, interval, intervalCount);
  while (boundary <= after) {
    n++;
    boundary = addInterval(anchor, interval, n * intervalCount);
  }
  return boundary;
}
