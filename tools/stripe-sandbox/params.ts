import { z } from 'zod';
import { stripeCoded } from './errors.js';

/**
 * Request parameters per endpoint, as zod schemas over the decoded form (every leaf is a string).
 * Objects are strict: like Stripe, an unknown parameter is a 400 (`parameter_unknown`), so a typo in the
 * gateway fails here instead of being silently ignored. Parameters Stripe accepts but the sandbox does
 * not model are listed as `ignored` and accepted without effect.
 */

const ignored = z.unknown().optional();

const text = z.string();
const nonEmpty = z
  .string()
  .refine(
    (value) => value.length > 0,
    stripeCoded('parameter_invalid_empty', 'Invalid value: this parameter cannot be empty'),
  );

const integer = z
  .string()
  .refine((value) => /^-?\d+$/.test(value), stripeCoded('parameter_invalid_integer', 'Invalid integer'))
  .transform(Number)
  .refine(
    (n) => Number.isSafeInteger(n),
    stripeCoded('parameter_invalid_integer', 'Invalid integer: out of range'),
  );

const positiveInteger = integer.refine(
  (n) => n >= 1,
  stripeCoded('parameter_invalid_integer', 'Invalid integer: must be at least 1'),
);

const boolean = z.enum(['true', 'false']).transform((value) => value === 'true');

/** The decoder reads `metadata[0]=x` as an array; metadata is always a hash of strings. */
const metadataHash = z.preprocess(
  (value) => (Array.isArray(value) ? Object.fromEntries(value.map((v, i) => [String(i), v])) : value),
  z.record(z.string().min(1).max(40), z.string().max(500)),
);

/** `metadata=` clears every key; a key sent as `''` is removed. */
const metadata = z.union([z.literal(''), metadataHash]);

const expand = z.array(z.string()).max(20).optional();

const limit = integer
  .refine((n) => n >= 1 && n <= 100, 'Invalid limit: must be between 1 and 100')
  .optional();

const pagination = {
  limit,
  starting_after: text.optional(),
  ending_before: text.optional(),
  expand,
};

/** `created=<ts>` or `created[gte]=<ts>` and friends, as Stripe's list endpoints take them. */
const createdRange = z.union([
  integer,
  z.strictObject({
    gt: integer.optional(),
    gte: integer.optional(),
    lt: integer.optional(),
    lte: integer.optional(),
  }),
]);

export type CreatedRange = z.infer<typeof createdRange>;

/** Whether a `created` timestamp falls in the requested range (no range: every timestamp). */
export function inRange(created: number, range: CreatedRange | undefined): boolean {
  if (range === undefined) return true;
  if (typeof range === 'number') return created === range;
  return (
    (range.gt === undefined || created > range.gt) &&
    (range.gte === undefined || created >= range.gte) &&
    (range.lt === undefined || created < range.lt) &&
    (range.lte === undefined || created <= range.lte)
  );
}

export const prorationBehavior = z.enum(['always_invoice', 'create_prorations', 'none']);

export const customerCreate = z.strictObject({
  email: text.optional(),
  name: text.optional(),
  description: text.optional(),
  phone: text.optional(),
  metadata: metadata.optional(),
  expand,
  address: ignored,
  preferred_locales: ignored,
  tax_exempt: ignored,
});

export const retrieve = z.strictObject({ expand });

export const priceList = z.strictObject({
  ...pagination,
  active: boolean.optional(),
  type: z.enum(['one_time', 'recurring']).optional(),
  lookup_keys: z.array(text).max(10, 'Invalid lookup_keys: you can pass up to 10 lookup keys').optional(),
  product: text.optional(),
  currency: text.optional(),
});

export const checkoutCreate = z.strictObject({
  mode: z.enum(['payment', 'subscription']),
  customer: text.optional(),
  customer_email: text.optional(),
  line_items: z
    .array(
      z.strictObject({
        price: nonEmpty,
        // Stripe requires a quantity on price-based Checkout line items.
        quantity: positiveInteger,
        adjustable_quantity: ignored,
      }),
    )
    .min(1, 'Invalid line_items: at least one line item is required'),
  success_url: text.optional(),
  cancel_url: text.optional(),
  client_reference_id: text.optional(),
  metadata: metadata.optional(),
  subscription_data: z
    .strictObject({ metadata: metadata.optional(), description: ignored, trial_period_days: ignored })
    .optional(),
  payment_intent_data: z
    .strictObject({ metadata: metadata.optional(), description: ignored, setup_future_usage: ignored })
    .optional(),
  allow_promotion_codes: boolean.optional(),
  expand,
  automatic_tax: ignored,
  billing_address_collection: ignored,
  customer_update: ignored,
  locale: ignored,
  payment_method_types: ignored,
  payment_method_collection: ignored,
  tax_id_collection: ignored,
  // This API version's values; the sandbox serves only the hosted page (checked by the engine).
  ui_mode: z.enum(['elements', 'embedded_page', 'form', 'hosted_page']).optional(),
});

export const checkoutList = z.strictObject({
  ...pagination,
  customer: text.optional(),
  payment_intent: text.optional(),
  subscription: text.optional(),
  status: z.enum(['complete', 'expired', 'open']).optional(),
  created: createdRange.optional(),
  customer_details: ignored,
  payment_link: ignored,
});

export const refundCreate = z.strictObject({
  charge: text.optional(),
  payment_intent: text.optional(),
  amount: positiveInteger.optional(),
  reason: z.enum(['duplicate', 'fraudulent', 'requested_by_customer']).optional(),
  metadata: metadata.optional(),
  expand,
  instructions_email: ignored,
  refund_application_fee: ignored,
  reverse_transfer: ignored,
});

export const refundList = z.strictObject({
  ...pagination,
  charge: text.optional(),
  payment_intent: text.optional(),
  created: createdRange.optional(),
});

export const disputeList = z.strictObject({
  ...pagination,
  charge: text.optional(),
  payment_intent: text.optional(),
  created: createdRange.optional(),
});

export const invoicePaymentList = z.strictObject({
  ...pagination,
  invoice: text.optional(),
  status: z.enum(['canceled', 'open', 'paid']).optional(),
  created: createdRange.optional(),
  payment: ignored,
});

export const portalCreate = z.strictObject({
  customer: nonEmpty,
  return_url: text.optional(),
  configuration: ignored,
  locale: ignored,
  expand,
});

export const subscriptionList = z.strictObject({
  ...pagination,
  customer: text.optional(),
  price: text.optional(),
  status: z
    .enum([
      'active',
      'all',
      'canceled',
      'ended',
      'incomplete',
      'incomplete_expired',
      'past_due',
      'paused',
      'trialing',
      'unpaid',
    ])
    .optional(),
});

const pauseCollection = z.union([
  z.literal(''),
  z.strictObject({
    behavior: z.enum(['keep_as_draft', 'mark_uncollectible', 'void']),
    resumes_at: integer.optional(),
  }),
]);

const itemParam = z.strictObject({
  id: text.optional(),
  price: nonEmpty.optional(),
  quantity: positiveInteger.optional(),
  metadata: metadata.optional(),
});

export const subscriptionUpdate = z.strictObject({
  items: z.array(itemParam).optional(),
  proration_behavior: prorationBehavior.optional(),
  payment_behavior: z.enum(['allow_incomplete', 'error_if_incomplete']).optional(),
  cancel_at_period_end: boolean.optional(),
  metadata: metadata.optional(),
  pause_collection: pauseCollection.optional(),
  trial_end: ignored,
  /** Prorations are computed as of this time instead of now (within the current period). */
  proration_date: integer.optional(),
  expand,
});

/** `POST /v1/invoices/create_preview`: the invoice an item change of a subscription would create. */
export const invoicePreview = z.strictObject({
  customer: text.optional(),
  subscription: text.optional(),
  subscription_details: z
    .strictObject({
      items: z.array(itemParam).optional(),
      proration_behavior: prorationBehavior.optional(),
      proration_date: integer.optional(),
      billing_cycle_anchor: ignored,
      cancel_at_period_end: ignored,
      default_tax_rates: ignored,
    })
    .optional(),
  preview_mode: ignored,
  automatic_tax: ignored,
  discounts: ignored,
  expand,
});

export const subscriptionCancel = z.strictObject({
  expand,
  invoice_now: boolean.optional(),
  prorate: boolean.optional(),
  cancellation_details: z
    .strictObject({
      comment: text.optional(),
      feedback: text.optional(),
    })
    .optional(),
});

const timestampOrNow = z.union([z.literal('now'), integer]);

const phase = z.strictObject({
  items: z
    .array(
      z.strictObject({
        price: nonEmpty,
        quantity: positiveInteger.optional(),
        metadata: metadata.optional(),
      }),
    )
    .min(1),
  start_date: timestampOrNow.optional(),
  end_date: timestampOrNow.optional(),
  duration: z
    .strictObject({
      interval: z.enum(['day', 'week', 'month', 'year']),
      interval_count: positiveInteger.optional(),
    })
    .optional(),
  proration_behavior: prorationBehavior.optional(),
  metadata: metadata.optional(),
  billing_cycle_anchor: ignored,
  collection_method: ignored,
  currency: ignored,
  description: ignored,
});

export const scheduleCreate = z.strictObject({
  from_subscription: nonEmpty,
  expand,
  metadata: metadata.optional(),
});

export const scheduleUpdate = z.strictObject({
  phases: z.array(phase).min(1).optional(),
  end_behavior: z.enum(['cancel', 'none', 'release', 'renew']).optional(),
  proration_behavior: prorationBehavior.optional(),
  metadata: metadata.optional(),
  default_settings: ignored,
  expand,
});

export const scheduleRelease = z.strictObject({
  preserve_cancel_date: boolean.optional(),
  expand,
});

export const invoiceList = z.strictObject({
  ...pagination,
  customer: text.optional(),
  subscription: text.optional(),
  status: z.enum(['draft', 'open', 'paid', 'uncollectible', 'void']).optional(),
  collection_method: ignored,
  created: ignored,
});

export const eventList = z.strictObject({
  ...pagination,
  type: text.optional(),
  types: z.array(text).max(20, 'Invalid types: you can pass up to 20 event types').optional(),
  created: createdRange.optional(),
  delivery_success: ignored,
});

/** Control endpoints (`/_sandbox/...`) take JSON. */
/** `POST /v1/invoices`: a one-off invoice (the gateway's enterprise contract invoices). */
export const invoiceCreate = z.strictObject({
  customer: nonEmpty,
  collection_method: z.enum(['charge_automatically', 'send_invoice']).optional(),
  days_until_due: integer.optional(),
  currency: z
    .string()
    .regex(/^[a-z]{3}$/)
    .optional(),
  auto_advance: boolean.optional(),
  pending_invoice_items_behavior: z.enum(['exclude', 'include']).optional(),
  description: text.optional(),
  metadata: metadata.optional(),
  expand,
  footer: ignored,
  custom_fields: ignored,
});

/** `POST /v1/invoiceitems`, attached to a draft with `invoice` (pending items are not modelled). */
export const invoiceItemCreate = z.strictObject({
  customer: nonEmpty,
  invoice: nonEmpty,
  amount: integer,
  currency: z.string().regex(/^[a-z]{3}$/),
  description: text.optional(),
  period: z.strictObject({ start: integer, end: integer }).optional(),
  metadata: metadata.optional(),
  expand,
});

export const invoiceFinalize = z.strictObject({ auto_advance: boolean.optional(), expand });

export const control = {
  advance: z.union([
    z.strictObject({ seconds: z.number().int().nonnegative() }),
    z.strictObject({ to: z.iso.datetime({ offset: true }) }),
  ]),
  paymentMethod: z.strictObject({ fails: z.boolean() }),
  status: z.strictObject({ status: z.enum(['unpaid', 'paused', 'active', 'past_due']) }),
  fault: z.strictObject({
    method: z
      .string()
      .min(1)
      .transform((m) => m.toUpperCase()),
    pathPrefix: z.string().startsWith('/'),
    status: z.union([z.literal(400), z.literal(429), z.literal(500), z.literal(503)]),
    /** How many matching requests fail; without `seconds`, 1. */
    count: z.number().int().positive().optional(),
    /** For how long matching requests fail (every one of them unless `count` also limits). */
    seconds: z.number().positive().optional(),
    /** Which clock `seconds` runs on: real time, or the sandbox clock (moved by /_sandbox/clock). */
    clock: z.enum(['real', 'sandbox']).default('real'),
  }),
  dispute: z.strictObject({
    status: z.enum(['warning_needs_response', 'needs_response']).default('needs_response'),
    reason: z.string().min(1).default('fraudulent'),
  }),
  disputeClose: z.strictObject({ outcome: z.enum(['won', 'lost']) }),
  webhooks: z.strictObject({ url: z.url().nullable().optional(), enabled: z.boolean().optional() }),
};

export type SubscriptionUpdateParams = z.infer<typeof subscriptionUpdate>;
export type ItemParam = z.infer<typeof itemParam>;
export type InvoicePreviewParams = z.infer<typeof invoicePreview>;
export type ScheduleUpdateParams = z.infer<typeof scheduleUpdate>;
export type PhaseParams = z.infer<typeof phase>;
export type CheckoutCreateParams = z.infer<typeof checkoutCreate>;
export type ProrationBehavior = z.infer<typeof prorationBehavior>;
export type MetadataParam = z.infer<typeof metadata>;
