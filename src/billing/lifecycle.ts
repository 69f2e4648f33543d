import { allocationForChange } from './access/lock-move.js';
import {
  type AuditEntry,
  type AuditWrite,
  auditAction,
  auditRowKey,
  auditUpsertAction,
} from './audit/entry.js';
import { type Catalog, INTERVALS, type Interval, PLAN_NAMES, type PlanName } from './catalog.js';
import type { Clock } from './clock.js';
import type { Customers } from './customers.js';
import { unavailable } from './errors.js';
import type { OwnerId } from './ids.js';
import { listOwnedItems } from './owner/items.js';
import { SUBSCRIPTION_ROW } from './owner/keys.js';
import type { OwnerAccess } from './owner/owner-access.js';
import { withVersion } from './owner/snapshot.js';
import type {
  DuplicateCancellation,
  PaymentsGateway,
  PriceInfo,
  ProcessorSubscriptionStatus,
  SubscriptionInfo,
} from './payments.js';
import { answer, commit, RETRY, write } from './storage/commit.js';
import { ConcurrencyExhaustedError, type EntityTable, type TransactionAction } from './store.js';
import { type SubscriptionState, type SubscriptionStatus, subscriptionProps } from './subscription.js';

/**
 * Subscription lifecycle: turns the payment processor's view of a customer into our subscription state,
 * exactly once per event, whatever order events arrive in.
 *
 * Order-independence comes from re-reading: every event for a customer causes one fresh read of that
 * customer's subscriptions from Stripe, and the state written is derived from that read, never from the
 * event's payload (see docs/decisions/0003-refetch-on-every-event.md). Exactly-once comes from the marker:
 * the processed-event row, the state change, the invoice row and the audit row commit in one entity-group
 * transaction in the owner's partition, and a second copy of the event fails on the marker.
 */

export interface DunningPolicy {
  readonly graceAfterAttempts: number;
  readonly lockAfterAttempts: number;
}

/** What caused a sync, recorded on the marker and the audit row. */
export type SyncCause =
  | { readonly kind: 'event'; readonly id: string; readonly type: string }
  | {
      readonly kind: 'action';
      /** The request's id. */
      readonly id: string;
      readonly type: string;
      /** The token's `sub`. */
      readonly actor: string;
      /** @default 'user' */
      readonly actorKind?: 'user' | 'service' | 'admin';
    }
  /** A reconciler run (`id` is the run's id) repairing drift it found in Stripe. */
  | { readonly kind: 'reconcile'; readonly id: string; readonly type: string };

export type SyncOutcome =
  | ({ readonly kind: 'applied'; readonly ownerId: OwnerId; readonly state: SubscriptionState } & SyncNotes)
  | ({ readonly kind: 'unchanged'; readonly ownerId: OwnerId } & SyncNotes)
  | { readonly kind: 'duplicate'; readonly ownerId: OwnerId };

/** What the processor logs beside the outcome. */
export interface SyncNotes {
  /** The customer's subscriptions on prices that are not ours (a day or week price, another product). */
  readonly foreign?: readonly string[];
  /** Second live subscriptions cancelled and refunded (one live subscription per owner). */
  readonly duplicatesCancelled?: readonly string[];
}

export class UnmappedPriceError extends Error {
  constructor(readonly price: PriceInfo) {
    super(
      `Price ${price.id} (lookup key ${price.lookupKey ?? 'none'}, product ${price.productId}, ${price.unitAmount ?? '?'} ${price.currency}/${price.interval ?? 'one-time'}) matches no plan in the catalog`,
    );
    this.name = 'UnmappedPriceError';
  }
}

export class UnknownCustomerError extends Error {
  constructor(readonly customerId: string) {
    super(`Stripe customer ${customerId} belongs to no billing owner we know`);
    this.name = 'UnknownCustomerError';
  }
}

/**
 * Which plan and interval a price stands for, in this order (first match wins):
 * 1. the price's lookup key (`pro_monthly`), the catalog's own name for it;
 * 2. the product's `plan` metadata with the price's interval, so a re-created price without a lookup key
 *    still maps;
 * 3. the amount, currency and interval signature, so a renamed product with no metadata still maps.
 */
export function detectTier(
  price: PriceInfo,
  catalog: Catalog,
): { plan: PlanName; interval: Interval } | undefined {
  const toInterval = (i: PriceInfo['interval']): Interval | undefined =>
    i === 'month' ? 'monthly' : i === 'year' ? 'yearly' : undefined;
  const paid = PLAN_NAMES.filter((name) => catalog[name].prices !== null);
  if (price.lookupKey) {
    for (const plan of paid) {
      for (const interval of INTERVALS) {
        if (catalog[plan].prices?.[interval].lookupKey === price.lookupKey) return { plan, interval };
      }
    }
  }
  const interval = toInterval(price.interval);
  if (interval === undefined) return undefined;
  const fromMetadata = paid.find((plan) => price.productMetadata.plan === plan);
  if (fromMetadata) return { plan: fromMetadata, interval };
  const bySignature = paid.find((plan) => {
    const reference = catalog[plan].prices?.[interval];
    return reference?.unitAmount === price.unitAmount && reference?.currency === price.currency;
  });
  return bySignature ? { plan: bySignature, interval } : undefined;
}

/** Every Stripe status, mapped to ours. `past_due` splits by how many renewal attempts have failed. */
export function internalStatus(sub: SubscriptionInfo, dunning: DunningPolicy): SubscriptionStatus {
  switch (sub.status) {
    case 'active':
      return 'active';
    case 'trialing':
      return 'trialing';
    case 'past_due':
      if (sub.latestInvoiceAttempts >= dunning.lockAfterAttempts) return 'past_due';
      if (sub.latestInvoiceAttempts >= dunning.graceAfterAttempts) return 'grace';
      return 'retrying';
    case 'unpaid':
      return 'unpaid';
    case 'paused':
      return 'paused';
    case 'incomplete':
      return 'incomplete';
    case 'canceled':
    case 'incomplete_expired':
      return 'canceled';
  }
}

/** Stripe's statuses of a subscription that still bills (or is owed): not ended, not incomplete. */
const LIVE: ReadonlySet<string> = new Set<ProcessorSubscriptionStatus>([
  'active',
  'trialing',
  'past_due',
  'unpaid',
  'paused',
]);
export const isLiveInStripe = (sub: SubscriptionInfo): boolean => LIVE.has(sub.status);

/** Whether every item's price is one of our plans' (a subscription on any other price is not ours). */
export function isOurs(sub: SubscriptionInfo, catalog: Catalog): boolean {
  return sub.items.length > 0 && sub.items.every((item) => detectTier(item.price, catalog) !== undefined);
}

/**
 * One live subscription per owner: when two checkouts were both paid, the one paid first is kept (its
 * creation is when its first invoice was paid) and the others go. Ties fall to the smaller id, so every
 * reader picks the same one.
 */
export function duplicateLive(subs: readonly SubscriptionInfo[]): {
  readonly keep: SubscriptionInfo | undefined;
  readonly extra: readonly SubscriptionInfo[];
} {
  const live = subs
    .filter((sub) => LIVE.has(sub.status))
    .sort((a, b) => a.created.getTime() - b.created.getTime() || a.id.localeCompare(b.id));
  return { keep: live[0], extra: live.slice(1) };
}

/** The subscription that governs access: a live one before an ended one, then the newest. */
export function currentSubscription(subs: readonly SubscriptionInfo[]): SubscriptionInfo | undefined {
  return [...subs].sort((a, b) => {
    const live = Number(LIVE.has(b.status)) - Number(LIVE.has(a.status));
    return live !== 0 ? live : b.created.getTime() - a.created.getTime();
  })[0];
}

export function stateFromSubscription(
  sub: SubscriptionInfo,
  catalog: Catalog,
  dunning: DunningPolicy,
  now: Date,
): SubscriptionState {
  const item = sub.items[0];
  if (!item) throw new Error(`Subscription ${sub.id} has no items`);
  const tier = detectTier(item.price, catalog);
  if (!tier) throw new UnmappedPriceError(item.price);
  const scheduled = sub.scheduledPhase;
  const scheduledTier = scheduled ? detectTier(scheduled.price, catalog) : undefined;
  if (scheduled && !scheduledTier) throw new UnmappedPriceError(scheduled.price);
  return {
    plan: tier.plan,
    interval: tier.interval,
    status: internalStatus(sub, dunning),
    seats: item.quantity,
    currentPeriodStart: sub.currentPeriodStart.toISOString(),
    currentPeriodEnd: sub.currentPeriodEnd.toISOString(),
    billingCycleAnchor: sub.billingCycleAnchor.toISOString(),
    cancelAtPeriodEnd: sub.cancelAtPeriodEnd,
    updatedAt: now.toISOString(),
    stripeSubscriptionId: sub.id,
    stripeCustomerId: sub.customerId,
    stripeStatus: sub.status,
    paymentAttempts: sub.latestInvoiceAttempts,
    ...(scheduled && scheduledTier
      ? {
          scheduledPlan: scheduledTier.plan,
          scheduledInterval: scheduledTier.interval,
          scheduledSeats: scheduled.quantity,
          scheduledAt: scheduled.startsAt.toISOString(),
        }
      : {}),
  };
}

/**
 * The state when Stripe has no subscription of ours for the customer any more (deleted, or only foreign
 * ones left): what we held ends, so access falls to free. Failing closed: a vanished subscription must
 * not keep a paid plan.
 */
export function endedState(stored: SubscriptionState, now: Date): SubscriptionState {
  const { scheduledPlan: _p, scheduledInterval: _i, scheduledSeats: _s, scheduledAt: _a, ...rest } = stored;
  return {
    ...rest,
    status: 'canceled',
    stripeStatus: 'canceled',
    cancelAtPeriodEnd: false,
    updatedAt: now.toISOString(),
  };
}

/** Fields whose change is a billing change (`updatedAt` is bookkeeping). */
function sameState(a: SubscriptionState | undefined, b: SubscriptionState | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  const strip = ({ updatedAt: _u, ...rest }: SubscriptionState) =>
    JSON.stringify(Object.entries(rest).sort());
  return strip(a) === strip(b);
}

const markerKey = (cause: SyncCause) => `${cause.kind}|${cause.id}`;

export interface SubscriptionSync {
  /**
   * Re-reads the customer's subscriptions and applies the result once for `cause`. `extra` rows (an
   * invoice, read from Stripe beside the subscriptions) commit in the same transaction.
   */
  syncCustomer(
    customerId: string,
    cause: SyncCause,
    extra?: () => Promise<readonly TransactionAction[]>,
  ): Promise<SyncOutcome>;
}

export function createSubscriptionSync(deps: {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  readonly owners: OwnerAccess;
  readonly customers: Customers;
  readonly payments: PaymentsGateway;
  readonly catalog: Catalog;
  readonly dunning: DunningPolicy;
  readonly clock: Clock;
}): SubscriptionSync {
  const { table, owners, customers, payments, catalog, dunning, clock } = deps;

  /**
   * Cancels and refunds second live subscriptions. The intent is audited before Stripe is called (a
   * pending row), so a crash between the two leaves a trace; the outcome is written with the sync.
   * Stripe's side is idempotent per subscription, so a retry cancels and refunds nothing twice.
   */
  async function cancelDuplicates(
    ownerId: OwnerId,
    keep: SubscriptionInfo | undefined,
    duplicates: readonly SubscriptionInfo[],
    cause: SyncCause,
  ): Promise<Array<{ readonly sub: SubscriptionInfo; readonly cancellation: DuplicateCancellation }>> {
    const done: Array<{ readonly sub: SubscriptionInfo; readonly cancellation: DuplicateCancellation }> = [];
    for (const sub of duplicates) {
      const at = clock.now().toISOString();
      // The pending step, completed by the same key in the sync's transaction (`duplicateAuditAction`).
      const pending = duplicateAuditAction(sub, cause, at, {
        state: 'cancelling',
        keptSubscriptionId: keep?.id ?? '',
      });
      await table.upsert(ownerId, pending.rowKey, pending.props);
      done.push({
        sub,
        cancellation: await payments.cancelDuplicateSubscription(sub.id, `duplicate-${sub.id}`),
      });
    }
    return done;
  }

  return {
    async syncCustomer(customerId, cause, extra) {
      const ownerId = await customers.ownerOf(customerId);
      if (ownerId === undefined) throw new UnknownCustomerError(customerId);
      const marker = markerKey(cause);
      try {
        return await commit<SyncOutcome>(
          table,
          ownerId,
          async () => {
            // A copy of an event already applied is caught by the marker's create in the transaction below
            // (action 0), not by reading the marker first: copies are rare (the processor re-queues only what
            // did not commit), and that read would cost every event a storage call to save a copy a Stripe
            // read. Our rows first, then Stripe: if another event commits a newer read in between, our
            // version is stale and this round is redone from fresh state, so an older read never overwrites
            // a newer one.
            const snapshot = await owners.read(ownerId);
            const stored = snapshot.subscription;
            // Stripe is read after our rows, and the extra rows (an invoice re-read) with it, so the version
            // the commit is conditioned on guards them too.
            const [listed, extraRows] = await Promise.all([
              payments.listSubscriptions(customerId),
              extra?.() ?? Promise.resolve([]),
            ]);
            const foreign = listed.filter((sub) => !isOurs(sub, catalog)).map((sub) => sub.id);
            const ours = listed.filter((sub) => isOurs(sub, catalog));
            const { keep, extra: duplicates } = duplicateLive(ours);
            const cancelled = await cancelDuplicates(ownerId, keep, duplicates, cause);
            const current = keep ?? currentSubscription(ours);
            const now = clock.now();
            const next = current
              ? stateFromSubscription(current, catalog, dunning, now)
              : stored && stored.state.status !== 'canceled'
                ? endedState(stored.state, now)
                : undefined;
            const changed = next !== undefined && !sameState(stored?.state, next);
            const at = now.toISOString();
            const notes: SyncNotes = {
              ...(foreign.length > 0 ? { foreign } : {}),
              ...(cancelled.length > 0
                ? { duplicatesCancelled: cancelled.map((c) => c.cancellation.subscriptionId) }
                : {}),
            };
            // A reconciler run that finds nothing to repair leaves no trace (no marker row per owner per run).
            if (!changed && cause.kind === 'reconcile' && cancelled.length === 0 && !extra) {
              return answer({ kind: 'unchanged', ownerId, ...notes });
            }

            const actions: TransactionAction[] = [
              { kind: 'create', rowKey: marker, props: { causeKind: cause.kind, type: cause.type, at } },
              ...extraRows,
              ...cancelled.map(({ sub, cancellation }) =>
                duplicateAuditAction(sub, cause, at, {
                  state: 'cancelled',
                  refundId: cancellation.refund?.id ?? '',
                  refundAmount: cancellation.refund?.amount ?? 0,
                  refundCurrency: cancellation.refund?.currency ?? '',
                }),
              ),
            ];
            if (changed && next) {
              const props = subscriptionProps(next);
              actions.push(
                stored
                  ? { kind: 'update', rowKey: SUBSCRIPTION_ROW, props, etag: stored.etag }
                  : { kind: 'create', rowKey: SUBSCRIPTION_ROW, props },
                auditAction(subscriptionAudit(cause, stored?.state, next, at), cause.id),
              );
              // New limits move the lock set in the same transaction: over-limit items lock, never go.
              const allocation = await allocationForChange(
                snapshot,
                catalog,
                { subscription: next },
                now,
                () => listOwnedItems(table, ownerId),
              );
              if (allocation) actions.push(allocation.action);
            }
            return write(
              withVersion(snapshot, actions),
              () =>
                changed && next
                  ? { kind: 'applied', ownerId, state: next, ...notes }
                  : { kind: 'unchanged', ownerId, ...notes },
              // The marker is action 0: if it exists, a concurrent copy of this event won.
              (error): SyncOutcome | typeof RETRY =>
                error.actionIndex === 0 && error.reason === 'exists' ? { kind: 'duplicate', ownerId } : RETRY,
            );
          },
          { what: `applying ${cause.id} to ${ownerId}`, maxAttempts: 6, baseDelayMs: 10 },
        );
      } catch (error) {
        if (!(error instanceof ConcurrencyExhaustedError)) throw error;
        throw unavailable(
          'sync_contended',
          `Owner ${ownerId} kept changing while applying ${cause.id}; retry later`,
          1,
          error,
        );
      }
    },
  };
}

/** Who and what a sync's cause was, in the shared audit shape. */
export function auditActorAndCause(cause: SyncCause): Pick<AuditEntry, 'actor' | 'cause'> {
  switch (cause.kind) {
    case 'event':
      return {
        actor: { kind: 'stripe', id: 'stripe' },
        cause: { kind: 'event', id: cause.id, type: cause.type },
      };
    case 'action':
      return {
        actor: { kind: cause.actorKind ?? 'user', id: cause.actor },
        cause: { kind: 'action', id: cause.id, type: cause.type },
      };
    case 'reconcile':
      return {
        actor: { kind: 'reconciler', id: 'reconciler' },
        cause: { kind: 'reconcile', id: cause.id, type: cause.type },
      };
  }
}

/**
 * The audit row of a second live subscription: written as `cancelling` before Stripe is called, replaced
 * by `cancelled` with its refund in the sync's transaction. One row per subscription (an upsert at a key
 * every writer computes without a read: the duplicate's id, sorted at its creation, when it appeared).
 */
function duplicateAuditAction(
  sub: SubscriptionInfo,
  cause: SyncCause,
  at: string,
  details: Readonly<Record<string, string | number>>,
): AuditWrite<'upsert'> {
  return auditUpsertAction(
    {
      at,
      kind: 'duplicate_subscription',
      ...auditActorAndCause(cause),
      before: null,
      after: null,
      details: { subscriptionId: sub.id, ...details },
    },
    `duplicate-${sub.id}`,
    sub.created.toISOString(),
  );
}

/** The key of a duplicate's audit row (for tests and operators). */
export const duplicateAuditKey = (sub: Pick<SubscriptionInfo, 'id' | 'created'>) =>
  auditRowKey(sub.created.toISOString(), `duplicate-${sub.id}`);

function subscriptionAudit(
  cause: SyncCause,
  before: SubscriptionState | undefined,
  after: SubscriptionState,
  at: string,
): AuditEntry {
  const previous: Record<string, unknown> = before ? { ...before } : {};
  const changes = Object.entries(after)
    .filter(([key, value]) => key !== 'updatedAt' && JSON.stringify(previous[key]) !== JSON.stringify(value))
    .map(([key]) => key);
  return {
    at,
    kind: 'subscription_changed',
    ...auditActorAndCause(cause),
    before: before ?? null,
    after,
    details: { changed: changes.join(',') },
  };
}
