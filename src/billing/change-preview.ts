import type { AccessLevel, Capabilities } from './access/capabilities.js';
import { capabilitiesFor } from './access/decide.js';
import { allocationForChange } from './access/lock-move.js';
import { hasLocks, type LockReport, lockReport } from './access/locks.js';
import type { BillingActions } from './billing-actions.js';
import type { Catalog, Interval, PlanFlags, PlanLimits, PlanName } from './catalog.js';
import { type ChangeRequest, type PlannedChange, stateAfter } from './change-plan.js';
import { unavailable } from './errors.js';
import type { OwnerId } from './ids.js';
import type { Locks } from './locks.js';
import { listOwnedItems } from './owner/items.js';
import type { OwnerAccess } from './owner/owner-access.js';
import type { OwnerSnapshot } from './owner/snapshot.js';
import { type Versioned, versionOf } from './owner/versioned.js';
import type { InvoicePreview, PaymentsGateway } from './payments.js';
import type { EntityTable } from './store.js';
import type { SubscriptionState, SubscriptionStatus } from './subscription.js';

/**
 * What a plan change or a cancellation would do, answered before it is made and without changing
 * anything (no row written, nothing changed in Stripe). Everything comes from the code the change
 * itself runs: the plan from `BillingActions.plan` (`change-plan.ts`), the limits from the capability
 * rules, the lock set from `allocationForChange`, as the lifecycle computes it, and the amount from the processor's
 * preview of the very price change an upgrade makes.
 */

/** The terms in force on one side of the change. */
export interface PlanTerms {
  readonly plan: PlanName;
  /** `null` on the free plan. */
  readonly interval: Interval | null;
  readonly status: SubscriptionStatus | 'none';
  readonly accessLevel: AccessLevel;
  readonly limits: PlanLimits;
  readonly flags: PlanFlags;
  /** The Stripe quantity billed on a per-seat plan (`max(included, people)`); `null` otherwise. */
  readonly seats: number | null;
}

export interface ChangePreview extends Versioned {
  readonly kind: PlannedChange['kind'];
  /** When the change takes effect: now for an upgrade, the period end for a downgrade or cancellation. */
  readonly effectiveAt: string;
  readonly current: PlanTerms;
  readonly after: PlanTerms;
  /** Invoiced and collected when the change is made: an upgrade's prorations; otherwise nothing. */
  readonly dueNow: {
    readonly amount: number;
    readonly currency: string;
    readonly lines: ReadonlyArray<{
      readonly description: string | null;
      readonly amount: number;
      readonly proration: boolean;
      readonly periodStart: string;
      readonly periodEnd: string;
    }>;
  };
  /** Every resource locked once the change takes effect (with the owner's picks as they are now). */
  readonly locked: LockReport;
  /** Where the owner chooses what to keep instead (`PUT /api/billing/locks`). */
  readonly chooseLocks: { readonly method: 'PUT'; readonly href: string };
}

export interface ChangePreviews {
  /**
   * @throws BillingError as the change itself does before calling Stripe (`plan_not_purchasable`,
   *   `plan_not_self_serve`, `no_subscription`, `no_change`…), or `subscription_syncing` (503) while a
   *   subscription live in Stripe is not yet applied here.
   */
  preview(ownerId: OwnerId, request: ChangeRequest): Promise<ChangePreview>;
}

export const LOCKS_HREF = '/api/billing/locks';

export function createChangePreviews(deps: {
  readonly catalog: Catalog;
  readonly actions: Pick<BillingActions, 'plan'>;
  readonly owners: OwnerAccess;
  readonly locks: Pick<Locks, 'report'>;
  readonly payments: Pick<PaymentsGateway, 'previewPriceChangeNow'>;
  /** The owner-partitioned `billing` table (read only: the owner's items, when locks must be named). */
  readonly table: EntityTable;
}): ChangePreviews {
  const { catalog, actions, owners, locks, payments, table } = deps;

  /** The lock report once `next` is in force: the lifecycle's own computation, read instead of written. */
  async function lockedAfter(
    snapshot: OwnerSnapshot,
    next: SubscriptionState,
    at: Date,
  ): Promise<LockReport> {
    let items: ReturnType<typeof listOwnedItems> | undefined;
    const listItems = () => {
      items ??= listOwnedItems(table, snapshot.ownerId);
      return items;
    };
    const allocation = await allocationForChange(snapshot, catalog, { subscription: next }, at, listItems);
    // The limits locks are measured by stay the same: the lock set in force now stays too.
    if (allocation === undefined) return locks.report(snapshot);
    if (!hasLocks(allocation.locks)) return { workflows: [], credentials: [] };
    const listed = await listItems();
    return lockReport(allocation.locks, listed, snapshot.keep.picks);
  }

  async function dueNow(
    plan: PlannedChange,
    live: Parameters<PaymentsGateway['previewPriceChangeNow']>[0]['subscription'],
  ): Promise<ChangePreview['dueNow']> {
    if (plan.kind !== 'upgrade') {
      // Downgrades and cancellations wait for the period end; dropping a pending change bills nothing.
      return { amount: 0, currency: live.items[0]?.price.currency ?? 'usd', lines: [] };
    }
    const invoice: InvoicePreview = await payments.previewPriceChangeNow({
      subscription: live,
      priceId: plan.priceId,
      quantity: plan.quantity,
    });
    return {
      amount: invoice.amountDue,
      currency: invoice.currency,
      lines: invoice.lines.map((line) => ({
        ...line,
        periodStart: line.periodStart.toISOString(),
        periodEnd: line.periodEnd.toISOString(),
      })),
    };
  }

  return {
    async preview(ownerId, request) {
      const { live, plan } = await actions.plan(ownerId, request);
      const snapshot = await owners.read(ownerId);
      const stored = snapshot.subscription?.state;
      // Limits and locks are computed from our state, as the sync will: it must be this subscription's.
      const other = stored?.stripeSubscriptionId !== undefined && stored.stripeSubscriptionId !== live.id;
      if (stored === undefined || other) {
        throw unavailable(
          'subscription_syncing',
          `Subscription ${live.id} is live in Stripe but not yet applied here; retry in a moment.`,
          1,
        );
      }
      const next = stateAfter(stored, plan);
      const before = capabilitiesFor(snapshot, catalog);
      const after = capabilitiesFor(snapshot, catalog, { subscription: next }, plan.effectiveAt);
      const [locked, due] = await Promise.all([
        lockedAfter(snapshot, next, plan.effectiveAt),
        dueNow(plan, live),
      ]);
      return {
        ...versionOf(snapshot),
        kind: plan.kind,
        effectiveAt: plan.effectiveAt.toISOString(),
        current: termsOf(before, catalog),
        after: termsOf(after, catalog),
        dueNow: due,
        locked,
        chooseLocks: { method: 'PUT', href: LOCKS_HREF },
      };
    },
  };
}

function termsOf(caps: Capabilities, catalog: Catalog): PlanTerms {
  const paid = caps.accessLevel !== 'free';
  return {
    plan: caps.plan,
    interval: paid ? (caps.subscription?.interval ?? null) : null,
    status: caps.status,
    accessLevel: caps.accessLevel,
    limits: { ...caps.limits },
    flags: { ...caps.flags },
    seats: paid && catalog[caps.plan].perSeat ? (caps.subscription?.seats ?? null) : null,
  };
}
