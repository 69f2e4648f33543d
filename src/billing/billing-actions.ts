import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { type Catalog, creditPack, type Interval, type PlanName } from './catalog.js';
import {
  type ChangeRequest,
  type PlanChangeRequest,
  type PlannedCancel,
  type PlannedChange,
  type PlannedPlanChange,
  planCancel,
  planPlanChange,
} from './change-plan.js';
import type { Clock } from './clock.js';
import { contractActive } from './contracts/model.js';
import type { Customers } from './customers.js';
import type { Directory } from './directory/index.js';
import { conflict, unavailable, validationError } from './errors.js';
import type { OwnerId } from './ids.js';
import { currentSubscription, isLiveInStripe, type SubscriptionSync, type SyncOutcome } from './lifecycle.js';
import type { OwnerStore } from './owner/snapshot.js';
import type { CheckoutSessionInfo, PaymentsGateway, PriceInfo, SubscriptionInfo } from './payments.js';
import type { Pricing } from './pricing.js';
import { quantityFor } from './seats.js';
import type { EntityTable } from './store.js';

/**
 * What a billing owner can do to their subscription. Each change is made in Stripe, then re-read and
 * applied at once through the same path webhooks use (so the caller sees the result immediately and the
 * audit row names the request); the webhooks that follow find nothing left to change.
 */
export interface BillingActions {
  checkout(input: {
    ownerId: OwnerId;
    plan: PlanName;
    interval: Interval;
    seats?: number | undefined;
  }): Promise<{
    url: string;
    sessionId: string;
  }>;
  portal(ownerId: OwnerId): Promise<{ url: string }>;
  /** Checkout in payment mode for a one-time credit pack; credits are granted when Stripe confirms payment. */
  buyCredits(input: { ownerId: OwnerId; packId: string }): Promise<{ url: string; sessionId: string }>;
  change(input: {
    ownerId: OwnerId;
    plan: PlanName;
    interval: Interval;
    actor: string;
    /** The request's id: the audit row's cause and the sync's marker. @default a random UUID */
    requestId?: string;
  }): Promise<ChangeOutcome>;
  cancel(ownerId: OwnerId, actor: string, requestId?: string): Promise<SyncOutcome>;
  /**
   * What `change` or `cancel` would do, decided as they decide it, with nothing changed: for the preview.
   * @throws BillingError as `change` and `cancel` do before they call Stripe.
   */
  plan(ownerId: OwnerId, request: ChangeRequest): Promise<{ live: SubscriptionInfo; plan: PlannedChange }>;
  resume(ownerId: OwnerId, actor: string, requestId?: string): Promise<SyncOutcome>;
  invoices(ownerId: OwnerId): Promise<InvoiceRecord[]>;
}

export type ChangeOutcome =
  | { readonly kind: 'upgraded'; readonly effective: 'now' }
  | { readonly kind: 'downgrade_scheduled'; readonly effectiveAt: string };

export interface InvoiceRecord {
  readonly id: string;
  readonly number: string | null;
  readonly status: string;
  readonly currency: string;
  readonly amountDue: number;
  readonly amountPaid: number;
  readonly attemptCount: number;
  readonly billingReason: string | null;
  readonly created: string;
  readonly periodStart: string;
  readonly periodEnd: string;
  readonly hostedInvoiceUrl: string | null;
  readonly subscriptionId: string | null;
}

export const invoiceRecordSchema = z.object({
  id: z.string(),
  number: z.string().nullable(),
  status: z.string(),
  currency: z.string(),
  amountDue: z.number(),
  amountPaid: z.number(),
  attemptCount: z.number(),
  billingReason: z.string().nullable(),
  created: z.string(),
  periodStart: z.string(),
  periodEnd: z.string(),
  hostedInvoiceUrl: z.string().nullable(),
  subscriptionId: z.string().nullable(),
});

export const invoiceRowKey = (invoiceId: string) => `invoice|${invoiceId}`;

export function createBillingActions(deps: {
  readonly catalog: Catalog;
  readonly customers: Customers;
  readonly payments: PaymentsGateway;
  readonly pricing: Pricing;
  readonly sync: SubscriptionSync;
  readonly directory: Directory;
  readonly billingTable: EntityTable;
  /** The owner's snapshot: an enterprise contract that governs refuses a self-serve checkout. */
  readonly owners: OwnerStore;
  readonly clock: Clock;
  readonly urls: {
    readonly checkoutSuccess: string;
    readonly checkoutCancel: string;
    readonly portalReturn: string;
  };
}): BillingActions {
  const { catalog, customers, payments, pricing, sync, directory, billingTable, owners, clock, urls } = deps;

  /** The live price for a lookup key, from the pricing cache (refreshed once on a miss). */
  async function priceByKey(lookupKey: string): Promise<PriceInfo> {
    const found =
      (await pricing.current())?.prices.get(lookupKey) ?? (await pricing.refresh()).prices.get(lookupKey);
    if (!found) {
      throw unavailable(
        'price_not_configured',
        `No active Stripe price has lookup key ${lookupKey}; configure it in Stripe.`,
      );
    }
    return found;
  }

  async function priceFor(plan: PlanName, interval: Interval): Promise<PriceInfo> {
    const lookupKey = catalog[plan].prices?.[interval].lookupKey;
    if (!lookupKey) throw validationError('plan_not_purchasable', `The ${plan} plan is not sold.`);
    return priceByKey(lookupKey);
  }

  function requireSelfServe(plan: PlanName) {
    if (plan === 'free') {
      throw validationError(
        'plan_not_purchasable',
        'The free plan needs no checkout; cancel the subscription instead.',
      );
    }
    if (!catalog[plan].selfServe) {
      throw validationError('plan_not_self_serve', `The ${plan} plan is sold by contract; contact sales.`);
    }
  }

  async function liveSubscription(ownerId: OwnerId): Promise<SubscriptionInfo | undefined> {
    const customerId = await customers.customerOf(ownerId);
    if (!customerId) return undefined;
    const current = currentSubscription(await payments.listSubscriptions(customerId));
    return current && isLiveInStripe(current) ? current : undefined;
  }

  async function requireLive(ownerId: OwnerId): Promise<SubscriptionInfo> {
    const live = await liveSubscription(ownerId);
    if (!live) {
      throw conflict(
        'no_subscription',
        'There is no live subscription; start one with POST /api/billing/checkout.',
      );
    }
    return live;
  }

  /**
   * One open subscription checkout per owner: a new one expires the others, so an owner who opened Pro
   * and then Team can pay only the last. (Two made at the same instant may expire each other; paying
   * then needs a new one, which is safe. Creation times cannot order them: Stripe's are in seconds.)
   * What still slips through, a session paid before it was expired, is cancelled and refunded by the
   * sync (`lifecycle.ts`, one live subscription per owner).
   */
  async function expireOtherCheckouts(customerId: string, made: CheckoutSessionInfo): Promise<void> {
    const others = (await payments.listOpenCheckoutSessions(customerId)).filter(
      (open) => open.mode === 'subscription' && open.id !== made.id,
    );
    await Promise.all(others.map((open) => payments.expireCheckoutSession(open.id, `expire-${open.id}`)));
  }

  /**
   * The inputs of a change, gathered once for the change and its preview alike: the live subscription,
   * the target's live price and the people billed, then the one pure decision (`change-plan.ts`).
   */
  async function planPlan(
    ownerId: OwnerId,
    request: PlanChangeRequest,
  ): Promise<{ live: SubscriptionInfo; plan: PlannedPlanChange }> {
    requireSelfServe(request.plan);
    const live = await requireLive(ownerId);
    const price = await priceFor(request.plan, request.interval);
    const billable = catalog[request.plan].perSeat ? (await directory.counts(ownerId)).seats : 1;
    return { live, plan: planPlanChange({ request, live, price, billable, catalog, now: clock.now() }) };
  }

  async function planCancelOf(ownerId: OwnerId): Promise<{ live: SubscriptionInfo; plan: PlannedCancel }> {
    const live = await requireLive(ownerId);
    return { live, plan: planCancel(live) };
  }

  const actionCause = (type: string, actor: string, requestId: string | undefined) =>
    ({ kind: 'action', id: requestId ?? randomUUID(), type, actor }) as const;

  return {
    async checkout({ ownerId, plan, interval, seats }) {
      requireSelfServe(plan);
      const perSeat = catalog[plan].perSeat;
      if (seats !== undefined && !perSeat) {
        throw validationError(
          'seats_not_applicable',
          `The ${plan} plan is not billed per seat; leave seats out.`,
        );
      }
      // A subscription bought while a contract governs would be billed and give nothing until it ends.
      const { contract } = await owners.read(ownerId);
      if (contractActive(contract?.state, clock.now())) {
        throw conflict(
          'contract_active',
          `The account is on an enterprise contract until ${contract?.state.terms.endsAt}; its plan is changed by the account team, not by checkout.`,
        );
      }
      if (await liveSubscription(ownerId)) {
        throw conflict(
          'subscription_exists',
          'A subscription is already live; change it with POST /api/billing/subscription/change or manage it in the portal (POST /api/billing/portal).',
        );
      }
      // The people billed now (`seats.ts`); an explicit `seats` may buy more for the first period only,
      // since the seat sync brings the quantity back to the people at the next renewal.
      const billable = perSeat ? (await directory.counts(ownerId)).seats : 1;
      const quantity = perSeat ? Math.max(seats ?? 0, quantityFor(catalog[plan], billable)) : 1;
      const [price, customerId] = await Promise.all([priceFor(plan, interval), customers.ensure(ownerId)]);
      const session = await payments.createCheckoutSession({
        customerId,
        ownerId,
        mode: 'subscription',
        priceId: price.id,
        quantity,
        successUrl: urls.checkoutSuccess,
        cancelUrl: urls.checkoutCancel,
        metadata: { plan, interval },
        idempotencyKey: `checkout-${randomUUID()}`,
      });
      if (!session.url)
        throw unavailable('checkout_unavailable', 'Stripe returned a checkout session without a URL.');
      await expireOtherCheckouts(customerId, session);
      return { url: session.url, sessionId: session.id };
    },

    async buyCredits({ ownerId, packId }) {
      const pack = creditPack(packId);
      if (!pack)
        throw validationError(
          'credit_pack_unknown',
          `Unknown credit pack ${packId}; see GET /api/billing/credits for the packs on sale.`,
        );
      const price = await priceByKey(pack.lookupKey);
      const customerId = await customers.ensure(ownerId);
      const session = await payments.createCheckoutSession({
        customerId,
        ownerId,
        mode: 'payment',
        priceId: price.id,
        quantity: 1,
        successUrl: urls.checkoutSuccess,
        cancelUrl: urls.checkoutCancel,
        metadata: { pack: pack.id },
        idempotencyKey: `credits-${randomUUID()}`,
      });
      if (!session.url)
        throw unavailable('checkout_unavailable', 'Stripe returned a checkout session without a URL.');
      return { url: session.url, sessionId: session.id };
    },

    async portal(ownerId) {
      const customerId = await customers.ensure(ownerId);
      return payments.createPortalSession({ customerId, returnUrl: urls.portalReturn });
    },

    plan: (ownerId, request) =>
      request.kind === 'plan' ? planPlan(ownerId, request) : planCancelOf(ownerId),

    async change({ ownerId, plan: target, interval, actor, requestId }) {
      const { live, plan } = await planPlan(ownerId, { kind: 'plan', plan: target, interval });
      const key = `change-${randomUUID()}`;
      switch (plan.kind) {
        case 'upgrade':
        case 'drop_scheduled_change': {
          if (plan.releaseScheduleId)
            await payments.releaseSchedule(plan.releaseScheduleId, `${key}:release`);
          if (plan.kind === 'upgrade') {
            await payments.changePriceNow({
              subscription: live,
              priceId: plan.priceId,
              quantity: plan.quantity,
              idempotencyKey: key,
            });
          }
          await sync.syncCustomer(
            live.customerId,
            actionCause(`subscription.change:${target}_${interval}`, actor, requestId),
          );
          return { kind: 'upgraded', effective: 'now' };
        }
        case 'downgrade':
          await payments.changePriceAtPeriodEnd({
            subscription: live,
            priceId: plan.priceId,
            quantity: plan.quantity,
            idempotencyKey: key,
          });
          await sync.syncCustomer(
            live.customerId,
            actionCause(`subscription.schedule:${target}_${interval}`, actor, requestId),
          );
          return { kind: 'downgrade_scheduled', effectiveAt: plan.effectiveAt.toISOString() };
      }
    },

    async cancel(ownerId, actor, requestId) {
      const { live, plan } = await planCancelOf(ownerId);
      const key = `cancel-${randomUUID()}`;
      if (plan.releaseScheduleId) await payments.releaseSchedule(plan.releaseScheduleId, `${key}:release`);
      await payments.setCancelAtPeriodEnd(live.id, true, key);
      return sync.syncCustomer(live.customerId, actionCause('subscription.cancel', actor, requestId));
    },

    async resume(ownerId, actor, requestId) {
      const live = await requireLive(ownerId);
      if (!live.cancelAtPeriodEnd) throw conflict('not_cancelling', 'The subscription is not set to cancel.');
      await payments.setCancelAtPeriodEnd(live.id, false, `resume-${randomUUID()}`);
      return sync.syncCustomer(live.customerId, actionCause('subscription.resume', actor, requestId));
    },

    async invoices(ownerId) {
      const rows = await billingTable.list(ownerId, { prefix: 'invoice|' });
      return (
        rows
          .map((row) => invoiceRecordSchema.parse(JSON.parse(String(row.props.json ?? '{}'))))
          // Newest first; invoices created in the same second fall back to their number, then id.
          .sort(
            (a, b) =>
              b.created.localeCompare(a.created) ||
              (b.number ?? '').localeCompare(a.number ?? '') ||
              b.id.localeCompare(a.id),
          )
      );
    },
  };
}
