import type { AccessLevel } from './access/capabilities.js';
import { capabilitiesFor } from './access/decide.js';
import { type LimitSource, limitSource } from './access/explain.js';
import { type Catalog, FEATURE_NAMES, type PlanFlags, type PlanName } from './catalog.js';
import { forbidden } from './errors.js';
import type { OwnerId, UserId, Workspace } from './ids.js';
import type { LockReport, Locks } from './locks.js';
import type { OwnerAccess } from './owner/owner-access.js';
import { liveOrg, meterStatus, type OwnerSnapshot, seatsInUse } from './owner/snapshot.js';
import { requireVersion, type Versioned, versionOf } from './owner/versioned.js';
import type { SubscriptionState, SubscriptionStatus } from './subscription.js';

export interface Allocation {
  readonly used: number;
  readonly limit: number | null;
  readonly remaining: number | null;
}

/** Everything the billing page needs for one workspace, from one owner's point of view. */
export interface BillingSummary extends Versioned {
  readonly owner: OwnerId;
  readonly workspace: Workspace;
  readonly plan: {
    readonly name: PlanName;
    readonly displayName: string;
    readonly interval: 'monthly' | 'yearly' | null;
  };
  /** The subscription's status, or the enterprise contract's payment state while one governs. */
  readonly status: SubscriptionStatus | 'none';
  readonly accessLevel: AccessLevel;
  /**
   * The enterprise contract in force (then `plan` is enterprise, with the contract's limits, flags and
   * seats, whatever a self-serve subscription says); `null` when none is active now.
   */
  readonly contract: {
    readonly id: string;
    readonly startsAt: string;
    readonly endsAt: string;
    readonly billing: 'manual' | 'stripe_invoice';
    readonly seats: number | null;
  } | null;
  readonly cancelAtPeriodEnd: boolean;
  /** End of the paid period (access under cancellation lasts until then); null on the free plan. */
  readonly currentPeriodEnd: string | null;
  readonly seatsPurchased: number | null;
  /**
   * People and what they cost: `used` distinct people (owner included); on per-seat plans `billed`, the
   * Stripe quantity of this period, and `nextPeriod`, what the renewal will bill (a decrease waits for
   * it); `maxSeats`, the owner's cap.
   */
  readonly seats: {
    readonly used: number;
    readonly billed: number | null;
    readonly nextPeriod: number | null;
    readonly maxSeats: number | null;
  };
  /** A downgrade waiting for the period end. */
  readonly scheduledChange: {
    readonly plan: PlanName;
    readonly interval: 'monthly' | 'yearly';
    readonly seats: number | null;
    readonly effectiveAt: string;
  } | null;
  readonly limits: Record<string, number | null>;
  readonly flags: PlanFlags;
  /**
   * Where each limit and flag in force comes from: `plan`, `free_plan_while_locked`, or `override` (a
   * per-owner override by an operator, until `overridesExpireAt`).
   */
  readonly sources: Readonly<Record<string, LimitSource>>;
  /** When the overrides in force lapse; `null` without overrides, or when they last until removed. */
  readonly overridesExpireAt: string | null;
  /** Per meter: used, the period allowance, what credits covered, what is left, and when the period ends. */
  readonly usage: {
    readonly executions: MeterUsage;
  };
  readonly credits: { readonly balance: number };
  /** Resources over a limit after a downgrade: kept, never deleted, but not usable until resolved. */
  readonly locked: LockReport;
  readonly allocations: {
    readonly workflows: Allocation;
    readonly credentials: Allocation;
    readonly seats: Allocation;
    readonly workflowsPerOrg: {
      readonly limit: number | null;
      readonly orgs: ReadonlyArray<{ readonly orgId: string; readonly name: string } & Allocation>;
    };
  };
}

export interface MeterUsage extends Allocation {
  /** The plan's allowance for the period (same as `limit`). */
  readonly allowance: number | null;
  readonly allowanceRemaining: number | null;
  /** Units covered by purchased credits this period. */
  readonly creditsUsed: number;
  /** Units beyond allowance and credits (only under monitor or off enforcement). */
  readonly overage: number;
  readonly periodStart: string;
  readonly periodEnd: string;
}

const allocation = (used: number, limit: number | null): Allocation => ({
  used,
  limit,
  remaining: limit === null ? null : Math.max(0, limit - used),
});

/**
 * The billing page, from the owner's snapshot (one range query) and, only when something is locked,
 * one listing of the owner's items to say what.
 */
export function createSummaries(deps: {
  readonly catalog: Catalog;
  readonly owners: OwnerAccess;
  readonly locks: Pick<Locks, 'report'>;
}) {
  const { catalog, owners, locks } = deps;
  return {
    /**
     * @param viewer who asks: a member who is not the owner sees the owner's totals (they bound what the
     *   member may create) but, of the owner's organizations, only the one they are in.
     * @param options.minVersion the snapshot read (always fresh here) must be at least this version.
     * @throws BillingError `version_not_reached`
     */
    async forWorkspace(
      ownerId: OwnerId,
      workspace: Workspace,
      viewer: UserId,
      options: { readonly minVersion?: number | undefined } = {},
    ): Promise<BillingSummary> {
      const snapshot = await owners.read(ownerId);
      requireVersion(snapshot, options.minVersion);
      if (workspace.kind === 'org' && !liveOrg(snapshot, workspace.orgId)) {
        // The organization was deleted after the token's membership was looked up.
        throw forbidden('not_a_member', `You are not a member of organization ${workspace.orgId}.`);
      }
      const caps = capabilitiesFor(snapshot, catalog);
      const executions = meterStatus(snapshot, 'executions', caps.period, caps.limits.executions);
      const locked = await locks.report(snapshot);
      // A member sees the locks of their own organization only, like its allocations.
      const visibleLocks =
        viewer === ownerId
          ? locked
          : {
              workflows: locked.workflows.filter((w) => sameWorkspace(w.workspace, workspace)),
              credentials: locked.credentials.filter((c) => sameWorkspace(c.workspace, workspace)),
            };
      const plan = catalog[caps.plan];
      const orgs = [...snapshot.orgs]
        .filter(
          ([orgId, org]) =>
            org.row.deleting !== true &&
            (viewer === ownerId || (workspace.kind === 'org' && orgId === workspace.orgId)),
        )
        .sort(([, a], [, b]) => a.row.createdAt.localeCompare(b.row.createdAt));
      return {
        ...versionOf(snapshot),
        owner: ownerId,
        workspace,
        plan: {
          name: plan.name,
          displayName: plan.displayName,
          interval: caps.accessLevel === 'free' ? null : (caps.subscription?.interval ?? null),
        },
        status: caps.status,
        accessLevel: caps.accessLevel,
        contract: caps.contract
          ? {
              id: caps.contract.id,
              startsAt: caps.contract.startsAt,
              endsAt: caps.contract.endsAt,
              billing: caps.contract.billing,
              seats: caps.contract.limits.seats,
            }
          : null,
        // Stripe keeps `cancel_at_period_end: true` on a subscription once it has ended: only a live one cancels.
        cancelAtPeriodEnd: caps.accessLevel !== 'free' && (caps.subscription?.cancelAtPeriodEnd ?? false),
        currentPeriodEnd: caps.accessLevel === 'free' ? null : (caps.subscription?.currentPeriodEnd ?? null),
        seatsPurchased:
          caps.accessLevel === 'free' || !plan.perSeat ? null : (caps.subscription?.seats ?? null),
        seats: seatsOf(snapshot, caps.subscription, catalog, plan.perSeat && caps.accessLevel !== 'free'),
        scheduledChange: scheduledChangeOf(caps.subscription),
        limits: { ...caps.limits },
        flags: caps.flags,
        sources: Object.fromEntries(FEATURE_NAMES.map((f) => [f, limitSource(caps, f)])),
        overridesExpireAt: caps.overrides?.expiresAt ?? null,
        usage: {
          executions: {
            used: executions.counter.used,
            limit: executions.allowance,
            remaining: executions.remaining,
            allowance: executions.allowance,
            allowanceRemaining: executions.allowanceRemaining,
            creditsUsed: executions.counter.creditsUsed,
            overage: executions.counter.overage,
            periodStart: executions.periodStart,
            periodEnd: executions.periodEnd,
          },
        },
        credits: { balance: snapshot.balance.credits },
        locked: visibleLocks,
        allocations: {
          workflows: allocation(snapshot.allocation.workflows, caps.limits.workflows),
          credentials: allocation(snapshot.allocation.credentials, caps.limits.credentials),
          seats: allocation(seatsInUse(snapshot), caps.limits.seats),
          workflowsPerOrg: {
            limit: caps.limits.workflows_per_org,
            orgs: orgs.map(([orgId, org]) => ({
              orgId,
              name: org.row.name,
              ...allocation(org.row.workflows, caps.limits.workflows_per_org),
            })),
          },
        },
      };
    },
  };
}

export type Summaries = ReturnType<typeof createSummaries>;

const sameWorkspace = (a: Workspace, b: Workspace) =>
  a.kind === 'org' ? b.kind === 'org' && a.orgId === b.orgId : b.kind === 'personal' && a.userId === b.userId;

function seatsOf(
  snapshot: OwnerSnapshot,
  subscription: SubscriptionState | undefined,
  catalog: Catalog,
  perSeat: boolean,
): BillingSummary['seats'] {
  const base = { used: seatsInUse(snapshot), maxSeats: snapshot.seatCap.maxSeats };
  if (!perSeat || !subscription) return { ...base, billed: null, nextPeriod: null };
  const scheduled = subscription.scheduledPlan;
  // A pending change to a plan not billed per seat bills no seats next period.
  const nextPeriod =
    scheduled === undefined
      ? subscription.seats
      : catalog[scheduled].perSeat
        ? (subscription.scheduledSeats ?? subscription.seats)
        : null;
  return { ...base, billed: subscription.seats, nextPeriod };
}

function scheduledChangeOf(subscription: SubscriptionState | undefined): BillingSummary['scheduledChange'] {
  if (!subscription?.scheduledPlan || !subscription.scheduledInterval || !subscription.scheduledAt)
    return null;
  // A schedule that only lowers seats at renewal is not a plan change: `seats.nextPeriod` shows it.
  if (
    subscription.scheduledPlan === subscription.plan &&
    subscription.scheduledInterval === subscription.interval
  )
    return null;
  return {
    plan: subscription.scheduledPlan,
    interval: subscription.scheduledInterval,
    seats: subscription.scheduledSeats ?? null,
    effectiveAt: subscription.scheduledAt,
  };
}
