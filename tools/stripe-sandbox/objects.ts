import {
  idOf,
  ids,
  list,
  type WireCharge,
  type WireCheckoutLineItem,
  type WireCheckoutSession,
  type WireCustomer,
  type WireDispute,
  type WireInvoice,
  type WireInvoiceLine,
  type WireInvoicePayment,
  type WirePaymentIntent,
  type WirePhase,
  type WirePlan,
  type WirePortalSession,
  type WirePrice,
  type WireProduct,
  type WireRefund,
  type WireSchedule,
  type WireSubscription,
  type WireSubscriptionItem,
} from './wire.js';

/**
 * Builders for every object the sandbox serves, filled field by field for the pinned API version. Fields
 * the sandbox has no use for carry the value Stripe gives an account without that feature (null, [],
 * false), so code reading them sees what it would see in test mode.
 */

export type Metadata = Record<string, string>;

export function buildCustomer(input: {
  id: string;
  created: number;
  email: string | null;
  name: string | null;
  description: string | null;
  phone: string | null;
  metadata: Metadata;
}): WireCustomer {
  return {
    id: input.id,
    object: 'customer',
    address: null,
    balance: 0,
    created: input.created,
    currency: null,
    default_source: null,
    delinquent: false,
    description: input.description,
    discount: null,
    email: input.email,
    invoice_prefix: ids.invoicePrefix(),
    invoice_settings: {
      custom_fields: null,
      default_payment_method: null,
      footer: null,
      rendering_options: null,
    },
    livemode: false,
    metadata: input.metadata,
    name: input.name,
    next_invoice_sequence: 1,
    phone: input.phone,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: null,
  };
}

export function buildProduct(input: { name: string; metadata: Metadata; created: number }): WireProduct {
  return {
    id: ids.product(),
    object: 'product',
    active: true,
    created: input.created,
    default_price: null,
    description: null,
    images: [],
    livemode: false,
    marketing_features: [],
    metadata: input.metadata,
    name: input.name,
    package_dimensions: null,
    shippable: null,
    statement_descriptor: null,
    tax_code: null,
    tax_details: null,
    type: 'service',
    unit_label: null,
    updated: input.created,
    url: null,
  };
}

export function buildPrice(input: {
  productId: string;
  lookupKey: string;
  unitAmount: number;
  currency: string;
  interval: 'day' | 'week' | 'month' | 'year' | null;
  created: number;
}): WirePrice {
  return {
    id: ids.price(),
    object: 'price',
    active: true,
    billing_scheme: 'per_unit',
    created: input.created,
    currency: input.currency.toLowerCase(),
    custom_unit_amount: null,
    livemode: false,
    lookup_key: input.lookupKey,
    metadata: {},
    nickname: null,
    product: input.productId,
    recurring:
      input.interval === null
        ? null
        : {
            interval: input.interval,
            interval_count: 1,
            meter: null,
            trial_period_days: null,
            usage_type: 'licensed',
          },
    tax_behavior: 'unspecified',
    tiers_mode: null,
    transform_quantity: null,
    type: input.interval === null ? 'one_time' : 'recurring',
    unit_amount: input.unitAmount,
    unit_amount_decimal: String(input.unitAmount),
  };
}

/** Recurring prices double as legacy plans with the same id; subscription items still carry `plan`. */
export function planOf(price: WirePrice): WirePlan {
  const recurring = price.recurring;
  return {
    id: price.id,
    object: 'plan',
    active: price.active,
    amount: price.unit_amount,
    amount_decimal: price.unit_amount_decimal,
    billing_scheme: price.billing_scheme,
    created: price.created,
    currency: price.currency,
    interval: recurring?.interval ?? 'month',
    interval_count: recurring?.interval_count ?? 1,
    livemode: false,
    metadata: price.metadata,
    meter: null,
    nickname: price.nickname,
    product: typeof price.product === 'string' ? price.product : price.product.id,
    tiers_mode: null,
    transform_usage: null,
    trial_period_days: null,
    usage_type: recurring?.usage_type ?? 'licensed',
  };
}

export function buildSubscriptionItem(input: {
  subscriptionId: string;
  price: WirePrice;
  quantity: number;
  created: number;
  periodStart: number;
  periodEnd: number;
}): WireSubscriptionItem {
  return {
    id: ids.subscriptionItem(),
    object: 'subscription_item',
    billing_thresholds: null,
    created: input.created,
    current_period_end: input.periodEnd,
    current_period_start: input.periodStart,
    current_trial: null,
    discounts: [],
    metadata: {},
    plan: planOf(input.price),
    price: input.price,
    quantity: input.quantity,
    subscription: input.subscriptionId,
    tax_rates: [],
  };
}

export function buildSubscription(input: {
  id: string;
  customerId: string;
  currency: string;
  created: number;
  items: WireSubscriptionItem[];
  metadata: Metadata;
  defaultPaymentMethod: string | null;
}): WireSubscription {
  return {
    id: input.id,
    object: 'subscription',
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: input.created,
    billing_cycle_anchor_config: null,
    billing_mode: {
      flexible: { proration_discounts: 'included' },
      type: 'flexible',
      updated_at: input.created,
    },
    billing_schedules: [],
    billing_thresholds: null,
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: null,
    cancellation_details: { comment: null, feedback: null, feedback_option: null, reason: null },
    collection_method: 'charge_automatically',
    created: input.created,
    currency: input.currency,
    customer: input.customerId,
    customer_account: null,
    days_until_due: null,
    default_payment_method: input.defaultPaymentMethod,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    ended_at: null,
    invoice_settings: {
      account_tax_ids: null,
      custom_fields: null,
      description: null,
      footer: null,
      issuer: { type: 'self' },
    },
    items: list(input.items, `/v1/subscription_items?subscription=${input.id}`),
    latest_invoice: null,
    livemode: false,
    managed_payments: null,
    metadata: input.metadata,
    next_pending_invoice_item_invoice: null,
    on_behalf_of: null,
    pause_collection: null,
    payment_settings: {
      payment_method_options: null,
      payment_method_types: null,
      save_default_payment_method: 'off',
    },
    pending_invoice_item_interval: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    start_date: input.created,
    status: 'active',
    test_clock: null,
    transfer_data: null,
    trial_end: null,
    trial_settings: {
      end_behavior: { billing_cycle_anchor: null, missing_payment_method: 'create_invoice' },
    },
    trial_start: null,
  };
}

/** What an invoice line is made from, before it belongs to an invoice. */
export interface LineDraft {
  readonly amount: number;
  readonly currency: string;
  readonly description: string;
  readonly price: WirePrice;
  readonly quantity: number;
  readonly periodStart: number;
  readonly periodEnd: number;
  readonly subscriptionItemId: string;
  readonly proration: boolean;
}

export function buildInvoiceLine(
  draft: LineDraft,
  invoiceId: string,
  subscriptionId: string,
): WireInvoiceLine {
  const productId = typeof draft.price.product === 'string' ? draft.price.product : draft.price.product.id;
  return {
    id: ids.invoiceLine(),
    object: 'line_item',
    amount: draft.amount,
    currency: draft.currency,
    description: draft.description,
    discount_amounts: [],
    discountable: !draft.proration,
    discounts: [],
    invoice: invoiceId,
    livemode: false,
    metadata: {},
    parent: {
      invoice_item_details: null,
      subscription_item_details: {
        invoice_item: draft.proration ? ids.invoiceItem() : null,
        proration: draft.proration,
        proration_details: { credited_items: null },
        subscription: subscriptionId,
        subscription_item: draft.subscriptionItemId,
      },
      type: 'subscription_item_details',
    },
    period: { end: draft.periodEnd, start: draft.periodStart },
    pretax_credit_amounts: [],
    pricing: {
      price_details: { price: draft.price.id, product: productId },
      type: 'price_details',
      unit_amount_decimal: draft.price.unit_amount_decimal,
    },
    quantity: draft.quantity,
    quantity_decimal: String(draft.quantity),
    subscription: subscriptionId,
    subtotal: draft.amount,
    taxes: [],
  };
}

/** Why an invoice is made; `upcoming` is a preview's (never stored). */
export type InvoiceBillingReason =
  | 'subscription_create'
  | 'subscription_cycle'
  | 'subscription_update'
  | 'upcoming';

export function buildInvoice(input: {
  id: string;
  customer: WireCustomer;
  subscriptionId: string;
  subscriptionMetadata: Metadata;
  currency: string;
  created: number;
  periodStart: number;
  periodEnd: number;
  billingReason: InvoiceBillingReason;
  lines: WireInvoiceLine[];
}): WireInvoice {
  const total = input.lines.reduce((sum, line) => sum + line.amount, 0);
  const due = Math.max(0, total);
  return {
    id: input.id,
    object: 'invoice',
    account_country: 'US',
    account_name: 'Stripe sandbox',
    account_tax_ids: null,
    amount_due: due,
    amount_overpaid: 0,
    amount_paid: 0,
    amount_remaining: due,
    amount_shipping: 0,
    application: null,
    attempt_count: 0,
    attempted: false,
    auto_advance: true,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null, provider: null, status: null },
    automatically_finalizes_at: null,
    billing_reason: input.billingReason,
    collection_method: 'charge_automatically',
    created: input.created,
    currency: input.currency,
    custom_fields: null,
    customer: input.customer.id,
    customer_account: null,
    customer_address: null,
    customer_email: input.customer.email,
    customer_name: input.customer.name ?? null,
    customer_phone: input.customer.phone ?? null,
    customer_shipping: null,
    customer_tax_exempt: 'none',
    customer_tax_ids: [],
    default_payment_method: null,
    default_source: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    due_date: null,
    effective_at: null,
    ending_balance: null,
    footer: null,
    from_invoice: null,
    hosted_invoice_url: null,
    invoice_pdf: null,
    issuer: { type: 'self' },
    last_finalization_error: null,
    latest_revision: null,
    lines: list(input.lines, `/v1/invoices/${input.id}/lines`),
    livemode: false,
    metadata: {},
    next_payment_attempt: null,
    number: null,
    on_behalf_of: null,
    parent: {
      quote_details: null,
      subscription_details: { metadata: input.subscriptionMetadata, subscription: input.subscriptionId },
      type: 'subscription_details',
    },
    payment_settings: { default_mandate: null, payment_method_options: null, payment_method_types: null },
    period_end: input.periodEnd,
    period_start: input.periodStart,
    post_payment_credit_notes_amount: 0,
    pre_payment_credit_notes_amount: 0,
    receipt_number: null,
    rendering: null,
    shipping_cost: null,
    shipping_details: null,
    starting_balance: 0,
    statement_descriptor: null,
    status: 'draft',
    status_transitions: { finalized_at: null, marked_uncollectible_at: null, paid_at: null, voided_at: null },
    subtotal: total,
    subtotal_excluding_tax: total,
    test_clock: null,
    total,
    total_discount_amounts: [],
    total_excluding_tax: total,
    total_pretax_credit_amounts: [],
    total_taxes: [],
    webhooks_delivered_at: null,
  };
}

/** A one-off invoice (no subscription): `billing_reason: manual`, its lines added by invoice items. */
export function buildOneOffInvoice(input: {
  id: string;
  customer: WireCustomer;
  currency: string;
  created: number;
  collectionMethod: 'charge_automatically' | 'send_invoice';
  daysUntilDue: number | null;
  autoAdvance: boolean;
  description: string | null;
  metadata: Metadata;
}): WireInvoice {
  const base = buildInvoice({
    id: input.id,
    customer: input.customer,
    subscriptionId: '',
    subscriptionMetadata: {},
    currency: input.currency,
    created: input.created,
    periodStart: input.created,
    periodEnd: input.created,
    billingReason: 'subscription_create',
    lines: [],
  });
  return {
    ...base,
    billing_reason: 'manual',
    collection_method: input.collectionMethod,
    auto_advance: input.autoAdvance,
    description: input.description,
    metadata: input.metadata,
    parent: null,
    // Stripe sets the due date at finalization, from `days_until_due`; kept here until then.
    due_date: null,
  };
}

/** The line of an invoice item (an amount, not a price) on a one-off invoice. */
export function buildInvoiceItemLine(input: {
  invoiceId: string;
  invoiceItemId: string;
  amount: number;
  currency: string;
  description: string | null;
  periodStart: number;
  periodEnd: number;
  metadata: Metadata;
}): WireInvoiceLine {
  return {
    id: ids.invoiceLine(),
    object: 'line_item',
    amount: input.amount,
    currency: input.currency,
    description: input.description,
    discount_amounts: [],
    discountable: true,
    discounts: [],
    invoice: input.invoiceId,
    livemode: false,
    metadata: input.metadata,
    parent: {
      invoice_item_details: {
        invoice_item: input.invoiceItemId,
        proration: false,
        proration_details: { credited_items: null },
        subscription: null,
      },
      subscription_item_details: null,
      type: 'invoice_item_details',
    },
    period: { end: input.periodEnd, start: input.periodStart },
    pretax_credit_amounts: [],
    pricing: null,
    quantity: 1,
    quantity_decimal: '1',
    subscription: null,
    subtotal: input.amount,
    taxes: [],
  };
}

export function buildCheckoutSession(input: {
  id: string;
  url: string;
  mode: 'subscription' | 'payment';
  customerId: string | null;
  customerEmail: string | null;
  amountTotal: number;
  currency: string;
  metadata: Metadata;
  clientReferenceId: string | null;
  successUrl: string | null;
  cancelUrl: string | null;
  allowPromotionCodes: boolean | null;
  created: number;
}): WireCheckoutSession {
  return {
    id: input.id,
    object: 'checkout.session',
    adaptive_pricing: input.mode === 'payment' ? { enabled: false } : null,
    after_expiration: null,
    allow_promotion_codes: input.allowPromotionCodes,
    allowed_payment_method_types: null,
    amount_subtotal: input.amountTotal,
    amount_total: input.amountTotal,
    automatic_tax: { enabled: false, liability: null, provider: null, status: null },
    billing_address_collection: null,
    cancel_url: input.cancelUrl,
    client_reference_id: input.clientReferenceId,
    client_secret: null,
    collected_information: null,
    consent: null,
    consent_collection: null,
    created: input.created,
    currency: input.currency,
    currency_conversion: null,
    custom_fields: [],
    custom_text: {
      after_submit: null,
      shipping_address: null,
      submit: null,
      terms_of_service_acceptance: null,
    },
    customer: input.customerId,
    customer_account: null,
    customer_creation:
      input.customerId !== null ? null : input.mode === 'subscription' ? 'always' : 'if_required',
    customer_details: null,
    customer_email: input.customerEmail,
    discounts: [],
    expires_at: input.created + 24 * 3600,
    integration_identifier: null,
    invoice: null,
    invoice_creation:
      input.mode === 'payment'
        ? {
            enabled: false,
            invoice_data: {
              account_tax_ids: null,
              custom_fields: null,
              description: null,
              footer: null,
              issuer: null,
              metadata: {},
              rendering_options: null,
            },
          }
        : null,
    livemode: false,
    locale: null,
    managed_payments: null,
    metadata: input.metadata,
    mode: input.mode,
    origin_context: null,
    payment_intent: null,
    payment_link: null,
    payment_method_collection: input.mode === 'subscription' ? 'always' : null,
    payment_method_configuration_details: null,
    payment_method_options: { card: { request_three_d_secure: 'automatic' } },
    payment_method_types: ['card'],
    payment_status: 'unpaid',
    permissions: null,
    recovered_from: null,
    saved_payment_method_options: null,
    setup_intent: null,
    shipping_address_collection: null,
    shipping_cost: null,
    shipping_options: [],
    status: 'open',
    submit_type: null,
    subscription: null,
    success_url: input.successUrl,
    total_details: { amount_discount: 0, amount_shipping: 0, amount_tax: 0 },
    ui_mode: 'hosted_page',
    url: input.url,
    wallet_options: null,
  };
}

export function buildCheckoutLineItem(
  price: WirePrice,
  quantity: number,
  productName: string,
): WireCheckoutLineItem {
  const amount = (price.unit_amount ?? 0) * quantity;
  return {
    id: ids.checkoutLineItem(),
    object: 'item',
    adjustable_quantity: null,
    amount_discount: 0,
    amount_subtotal: amount,
    amount_tax: 0,
    amount_total: amount,
    currency: price.currency,
    description: productName,
    metadata: {},
    price,
    quantity,
  };
}

export function buildPortalSession(input: {
  url: string;
  id: string;
  configuration: string;
  customerId: string;
  returnUrl: string | null;
  created: number;
}): WirePortalSession {
  return {
    id: input.id,
    object: 'billing_portal.session',
    configuration: input.configuration,
    created: input.created,
    customer: input.customerId,
    customer_account: null,
    flow: null,
    livemode: false,
    locale: null,
    on_behalf_of: null,
    return_url: input.returnUrl,
    url: input.url,
  };
}

export function buildPaymentIntent(input: {
  amount: number;
  currency: string;
  customerId: string | null;
  metadata: Metadata;
  paymentMethod: string;
  created: number;
}): WirePaymentIntent {
  return {
    id: ids.paymentIntent(),
    object: 'payment_intent',
    allowed_payment_method_types: null,
    amount: input.amount,
    amount_capturable: 0,
    amount_received: input.amount,
    application: null,
    application_fee_amount: null,
    automatic_payment_methods: null,
    canceled_at: null,
    cancellation_reason: null,
    capture_method: 'automatic',
    client_secret: null,
    confirmation_method: 'automatic',
    created: input.created,
    currency: input.currency,
    customer: input.customerId,
    customer_account: null,
    description: null,
    excluded_payment_method_types: null,
    last_payment_error: null,
    latest_charge: null,
    livemode: false,
    managed_payments: null,
    metadata: input.metadata,
    next_action: null,
    on_behalf_of: null,
    payment_method: input.paymentMethod,
    payment_method_configuration_details: null,
    payment_method_options: null,
    payment_method_types: ['card'],
    payment_record: null,
    processing: null,
    receipt_email: null,
    review: null,
    setup_future_usage: null,
    shipping: null,
    source: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: 'succeeded',
    transfer_group: null,
  };
}

export interface PhaseInput {
  readonly items: ReadonlyArray<{ readonly price: WirePrice; readonly quantity: number }>;
  readonly startDate: number;
  readonly endDate: number;
  readonly prorationBehavior: 'always_invoice' | 'create_prorations' | 'none';
  readonly metadata: Metadata;
}

export function buildPhase(input: PhaseInput): WirePhase {
  const first = input.items[0]?.price;
  return {
    add_invoice_items: [],
    application_fee_percent: null,
    billing_cycle_anchor: null,
    billing_thresholds: null,
    collection_method: null,
    currency: first?.currency ?? 'usd',
    default_payment_method: null,
    default_tax_rates: [],
    description: null,
    discounts: [],
    end_date: input.endDate,
    invoice_settings: null,
    items: input.items.map((item) => ({
      billing_thresholds: null,
      discounts: [],
      metadata: {},
      plan: item.price.id,
      price: item.price.id,
      quantity: item.quantity,
      tax_rates: [],
    })),
    metadata: input.metadata,
    on_behalf_of: null,
    proration_behavior: input.prorationBehavior,
    start_date: input.startDate,
    transfer_data: null,
    trial_end: null,
  };
}

export function buildSchedule(input: {
  id: string;
  subscriptionId: string;
  customerId: string;
  created: number;
  endBehavior: 'release' | 'cancel' | 'none';
  phases: WirePhase[];
  currentPhase: { start_date: number; end_date: number } | null;
}): WireSchedule {
  return {
    id: input.id,
    object: 'subscription_schedule',
    application: null,
    billing_mode: {
      flexible: { proration_discounts: 'included' },
      type: 'flexible',
      updated_at: input.created,
    },
    canceled_at: null,
    completed_at: null,
    created: input.created,
    current_phase: input.currentPhase,
    customer: input.customerId,
    customer_account: null,
    default_settings: {
      application_fee_percent: null,
      automatic_tax: { disabled_reason: null, enabled: false, liability: null },
      billing_cycle_anchor: 'automatic',
      billing_thresholds: null,
      collection_method: 'charge_automatically',
      default_payment_method: null,
      description: null,
      invoice_settings: {
        account_tax_ids: null,
        custom_fields: null,
        days_until_due: null,
        description: null,
        footer: null,
        issuer: { type: 'self' },
      },
      on_behalf_of: null,
      transfer_data: null,
    },
    end_behavior: input.endBehavior,
    livemode: false,
    metadata: {},
    pause_schedules: [],
    phases: input.phases,
    released_at: null,
    released_subscription: null,
    status: 'active',
    subscription: input.subscriptionId,
    test_clock: null,
  };
}

/** The card charge behind a succeeded payment intent (a Checkout payment or an invoice payment). */
export function buildCharge(input: {
  amount: number;
  currency: string;
  customerId: string | null;
  paymentIntentId: string;
  paymentMethod: string;
  metadata: Metadata;
  created: number;
}): WireCharge {
  return {
    id: ids.charge(),
    object: 'charge',
    amount: input.amount,
    amount_captured: input.amount,
    amount_refunded: 0,
    application: null,
    application_fee: null,
    application_fee_amount: null,
    balance_transaction: null,
    billing_details: { address: null, email: null, name: null, phone: null, tax_id: null },
    calculated_statement_descriptor: 'SANDBOX',
    captured: true,
    created: input.created,
    currency: input.currency,
    customer: input.customerId,
    description: null,
    disputed: false,
    failure_balance_transaction: null,
    failure_code: null,
    failure_message: null,
    fraud_details: {},
    livemode: false,
    metadata: input.metadata,
    on_behalf_of: null,
    outcome: {
      advice_code: null,
      network_advice_code: null,
      network_decline_code: null,
      network_status: 'approved_by_network',
      reason: null,
      risk_level: 'normal',
      seller_message: 'Payment complete.',
      type: 'authorized',
    },
    paid: true,
    payment_intent: input.paymentIntentId,
    payment_method: input.paymentMethod,
    payment_method_details: null,
    receipt_email: null,
    receipt_number: null,
    receipt_url: null,
    refunded: false,
    review: null,
    shipping: null,
    source: null,
    source_transfer: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: 'succeeded',
    transfer_data: null,
    transfer_group: null,
  };
}

export function buildRefund(input: {
  charge: WireCharge;
  amount: number;
  reason: 'duplicate' | 'fraudulent' | 'requested_by_customer' | null;
  metadata: Metadata;
  created: number;
}): WireRefund {
  return {
    id: ids.refund(),
    object: 'refund',
    amount: input.amount,
    balance_transaction: null,
    charge: input.charge.id,
    created: input.created,
    currency: input.charge.currency,
    customer: input.charge.customer === null ? null : idOf(input.charge.customer),
    customer_account: null,
    metadata: input.metadata,
    payment_intent: input.charge.payment_intent === null ? null : idOf(input.charge.payment_intent),
    payment_method: input.charge.payment_method,
    reason: input.reason,
    receipt_number: null,
    source_transfer_reversal: null,
    status: 'succeeded',
    transfer_reversal: null,
  };
}

const NO_EVIDENCE = {
  access_activity_log: null,
  billing_address: null,
  cancellation_policy: null,
  cancellation_policy_disclosure: null,
  cancellation_rebuttal: null,
  customer_communication: null,
  customer_email_address: null,
  customer_name: null,
  customer_purchase_ip: null,
  customer_signature: null,
  duplicate_charge_documentation: null,
  duplicate_charge_explanation: null,
  duplicate_charge_id: null,
  enhanced_evidence: {},
  product_description: null,
  receipt: null,
  refund_policy: null,
  refund_policy_disclosure: null,
  refund_refusal_explanation: null,
  service_date: null,
  service_documentation: null,
  shipping_address: null,
  shipping_carrier: null,
  shipping_date: null,
  shipping_documentation: null,
  shipping_tracking_number: null,
  uncategorized_file: null,
  uncategorized_text: null,
} as const;

/** A dispute names its charge and payment intent, never the customer (read it from the charge). */
export function buildDispute(input: {
  charge: WireCharge;
  status: 'warning_needs_response' | 'needs_response';
  reason: string;
  created: number;
}): WireDispute {
  return {
    id: ids.dispute(),
    object: 'dispute',
    amount: input.charge.amount - input.charge.amount_refunded,
    balance_transactions: [],
    charge: input.charge.id,
    created: input.created,
    currency: input.charge.currency,
    enhanced_eligibility_types: [],
    evidence: { ...NO_EVIDENCE, enhanced_evidence: {} },
    evidence_details: {
      due_by: input.created + 7 * 86_400,
      enhanced_eligibility: {},
      has_evidence: false,
      past_due: false,
      submission_count: 0,
      submission_method: 'not_submitted',
    },
    intended_submission_method: null,
    is_charge_refundable: false,
    livemode: false,
    metadata: {},
    payment_intent: input.charge.payment_intent === null ? null : idOf(input.charge.payment_intent),
    reason: input.reason,
    status: input.status,
  };
}

export function buildInvoicePayment(input: {
  invoiceId: string;
  amount: number;
  currency: string;
  paymentIntentId: string;
  created: number;
}): WireInvoicePayment {
  return {
    id: ids.invoicePayment(),
    object: 'invoice_payment',
    amount_paid: input.amount,
    amount_requested: input.amount,
    created: input.created,
    currency: input.currency,
    invoice: input.invoiceId,
    is_default: true,
    livemode: false,
    payment: { payment_intent: input.paymentIntentId, type: 'payment_intent' },
    status: 'paid',
    status_transitions: { canceled_at: null, paid_at: input.created },
  };
}
