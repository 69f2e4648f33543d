import {
  type Catalog,
  type FeatureName,
  type FlagName,
  isFlagName,
  type LimitName,
  type PlanFlags,
  type PlanLimits,
  type PlanName,
} from './catalog.js';
import type { Clock } from './clock.js';
import type { Directory, WorkflowRecord } from './directory.js';
import { type EnforcementMode, type EnforcementPolicy, modeFor } from './enforcement.js';
import { notFound, validationError } from './errors.js';
import type { OrgId, OwnerId, UserId, WorkflowId, Workspace } from './ids.js';
import type { Locks } from './locks.js';
import type { Metering } from './metering.js';
import { currentPeriod, type UsagePeriod } from './periods.js';
import type { EntityTable } from './store.js';
import {
  type AccessLevel,
  accessLevelOf,
  type SubscriptionState,
  type SubscriptionStatus,
  type Subscriptions,
} from './subscription.js';

/** Who is asking on behalf of what. The most specific id wins: workflow, then organization, then user. */
export interface Subject {
  readonly userId?: UserId | undefined;
  readonly orgId?: OrgId | undefined;
  readonly workflowId?: WorkflowId | undefined;
}

export const ALLOW_REASONS = [
  'within_limit',
  'unlimited',
  'feature_enabled',
  'not_applicable',
  'enforcement_off',
] as const;
export const DENY_REASONS = [
  'limit_exceeded',
  'feature_not_in_plan',
  'payment_required',
  'resource_locked',
] as const;
export type DecisionReason = (typeof ALLOW_REASONS)[number] | (typeof DENY_REASONS)[number];

/**
 * The answer to "may this subject do this?". Under `monitor` enforcement (configured, or because the
 * owner is in a payment grace period) `allowed` is true and `reason` still says what `enforce` would
 * have answered, so callers can warn.
 */
export interface Decision {
  readonly allowed: boolean;
  readonly reason: DecisionReason;
  readonly feature: FeatureName;
  /** `null` for flags and unlimited limits. */
  readonly limit: number | null;
  /** `null` where nothing was counted (flags, unlimited, enforcement off, not applicable). */
  readonly used: number | null;
  readonly remaining: number | null;
  readonly enforcement: EnforcementMode;
  readonly owner: OwnerId;
  readonly plan: PlanName;
  readonly accessLevel: AccessLevel;
}

/** Subscription status -> effective plan -> limits and flags, for one owner at one instant. */
export interface Capabilities {
  readonly ownerId: OwnerId;
  /** The plan subscribed to (free without a subscription or after cancellation). */
  readonly plan: PlanName;
  readonly status: SubscriptionStatus | 'none';
  readonly accessLevel: AccessLevel;
  readonly subscription: SubscriptionState | undefined;
  /** What is in force now: the plan's, or the free plan's while payment is locked. */
  readonly limits: PlanLimits;
  readonly flags: PlanFlags;
  /** What the subscribed plan would give with payment in order. */
  readonly planLimits: PlanLimits;
  readonly planFlags: PlanFlags;
  readonly period: UsagePeriod;
}

export interface CheckRequest {
  readonly subject: Subject;
  readonly feature: FeatureName;
  readonly quantity?: number | undefined;
}

export interface ResolvedSubject {
  readonly ownerId: OwnerId;
  readonly workspace: Workspace;
  readonly workflow?: WorkflowRecord;
}

export interface Entitlements {
  resolveSubject(subject: Subject): Promise<ResolvedSubject>;
  capabilities(ownerId: OwnerId): Promise<Capabilities>;
  check(request: CheckRequest): Promise<Decision>;
}

export interface EntitlementDeps {
  readonly catalog: Catalog;
  readonly directory: Directory;
  readonly subscriptions: Subscriptions;
  /** Consumable meters: what is used and what is left, credits included. */
  readonly meters: Pick<Metering, 'status'>;
  /** Over-limit workflows are locked after a downgrade: they may not run. */
  readonly locks: Pick<Locks, 'isWorkflowLocked'>;
  readonly enforcement: EnforcementPolicy;
  /** The owner-partitioned `billing` table, where would-be denials are recorded. */
  readonly billingTable: EntityTable;
  readonly clock: Clock;
}

export function createEntitlements(deps: EntitlementDeps): Entitlements {
  const { catalog, directory, subscriptions, meters, locks, enforcement, billingTable, clock } = deps;

  async function resolveSubject(subject: Subject): Promise<ResolvedSubject> {
    if (subject.workflowId !== undefined) {
      const workflow = await directory.getWorkflow(subject.workflowId);
      if (!workflow)
        throw notFound('workflow_not_found', `Workflow ${subject.workflowId} is not in the directory.`);
      const ws = workflow.workspace;
      if (subject.orgId !== undefined && (ws.kind !== 'org' || ws.orgId !== subject.orgId)) {
        throw validationError(
          'subject_inconsistent',
          `Workflow ${subject.workflowId} does not belong to organization ${subject.orgId}.`,
        );
      }
      return { ownerId: workflow.ownerId, workspace: ws, workflow };
    }
    if (subject.orgId !== undefined) {
      const workspace: Workspace = { kind: 'org', orgId: subject.orgId };
      return { ownerId: await directory.ownerOfWorkspace(workspace), workspace };
    }
    if (subject.userId !== undefined) {
      return { ownerId: subject.userId, workspace: { kind: 'personal', userId: subject.userId } };
    }
    throw validationError('subject_required', 'subject needs one of userId, orgId or workflowId.');
  }

  async function capabilities(ownerId: OwnerId): Promise<Capabilities> {
    const subscription = await subscriptions.get(ownerId);
    const status = subscription?.status ?? 'none';
    const accessLevel = accessLevelOf(status);
    const free = catalog.free;
    const subscribed = subscription && accessLevel !== 'free' ? catalog[subscription.plan] : free;
    const planLimits: PlanLimits = {
      ...subscribed.limits,
      // Per-seat plans include some seats and sell more; the subscription quantity is what was bought.
      seats:
        subscribed.perSeat && subscribed.limits.seats !== null && subscription
          ? Math.max(subscribed.limits.seats, subscription.seats)
          : subscribed.limits.seats,
    };
    const locked = accessLevel === 'locked';
    return {
      ownerId,
      plan: subscribed.name,
      status,
      accessLevel,
      subscription,
      // Locked accounts keep their data but fall back to what the free plan allows.
      limits: locked ? free.limits : planLimits,
      flags: locked ? free.flags : subscribed.flags,
      planLimits,
      planFlags: subscribed.flags,
      period: currentPeriod(clock.now(), subscription),
    };
  }

  /** How many are in use, and how many more the request adds, for one limit. */
  async function measure(
    feature: LimitName,
    caps: Capabilities,
    resolved: ResolvedSubject,
    quantity: number | undefined,
  ): Promise<{ used: number; adding: number; remaining?: number | null } | 'not_applicable'> {
    const counts = directory.counts(caps.ownerId);
    switch (feature) {
      case 'executions': {
        // Consumable: what is left is the period's allowance plus purchased credits.
        const status = await meters.status({
          ownerId: caps.ownerId,
          meter: 'executions',
          allowance: caps.limits.executions,
          period: caps.period,
        });
        return { used: status.used, adding: quantity ?? 1, remaining: status.remaining };
      }
      case 'workflows':
        return { used: await counts.workflows(), adding: quantity ?? 1 };
      case 'workflows_per_org':
        if (resolved.workspace.kind !== 'org') return 'not_applicable';
        return { used: await counts.workflowsInOrg(resolved.workspace.orgId), adding: quantity ?? 1 };
      case 'credentials':
        return { used: await counts.credentials(), adding: quantity ?? 1 };
      case 'seats':
        return { used: await counts.seats(), adding: quantity ?? 1 };
      case 'nodes_per_workflow': {
        // The size being saved; without one, the stored size of the subject's workflow.
        const nodes = quantity ?? resolved.workflow?.nodeCount;
        if (nodes === undefined) {
          throw validationError(
            'quantity_required',
            'nodes_per_workflow needs quantity (the node count being saved) or a subject.workflowId.',
          );
        }
        return { used: nodes, adding: 0 };
      }
    }
  }

  async function recordWouldDeny(decision: Decision, request: CheckRequest, why: 'monitor' | 'grace') {
    const at = clock.now().toISOString();
    // Append-only; the random suffix keeps concurrent records from colliding.
    await billingTable.create(decision.owner, `monitor|${at}|${Math.random().toString(36).slice(2, 10)}`, {
      feature: decision.feature,
      reason: decision.reason,
      why,
      limit: decision.limit ?? -1,
      used: decision.used ?? -1,
      quantity: request.quantity ?? 1,
      subject: JSON.stringify(request.subject),
      at,
    });
  }

  async function check(request: CheckRequest): Promise<Decision> {
    const { feature, quantity } = request;
    if (isFlagName(feature) && quantity !== undefined) {
      throw validationError('quantity_not_applicable', `${feature} is a feature flag; it takes no quantity.`);
    }
    const resolved = await resolveSubject(request.subject);
    const caps = await capabilities(resolved.ownerId);
    const mode = modeFor(enforcement, feature);
    const base = {
      feature,
      owner: caps.ownerId,
      plan: caps.plan,
      accessLevel: caps.accessLevel,
      enforcement: mode,
    };

    if (isFlagName(feature)) {
      if (mode === 'off')
        return {
          ...base,
          allowed: true,
          reason: 'enforcement_off',
          limit: null,
          used: null,
          remaining: null,
        };
      const decision: Decision = {
        ...base,
        allowed: caps.flags[feature],
        reason: caps.flags[feature] ? 'feature_enabled' : flagDenial(caps, feature),
        limit: null,
        used: null,
        remaining: null,
      };
      return applyMode(decision, request, mode, false);
    }

    const limit = caps.limits[feature];
    if (feature === 'executions' && mode !== 'off' && resolved.workflow) {
      if (await locks.isWorkflowLocked(caps.ownerId, resolved.workflow, caps.limits)) {
        const locked: Decision = {
          ...base,
          allowed: false,
          reason: 'resource_locked',
          limit,
          used: null,
          remaining: null,
        };
        return applyMode(locked, request, mode, true);
      }
    }
    if (mode === 'off')
      return { ...base, allowed: true, reason: 'enforcement_off', limit, used: null, remaining: null };
    if (limit === null)
      return { ...base, allowed: true, reason: 'unlimited', limit, used: null, remaining: null };
    const measured = await measure(feature, caps, resolved, quantity);
    if (measured === 'not_applicable') {
      return { ...base, allowed: true, reason: 'not_applicable', limit, used: null, remaining: null };
    }
    const { used, adding } = measured;
    // Allocations: what exists plus what would be added must fit the limit. Meters: what is left (the
    // allowance plus credits) must cover the request.
    const remaining = measured.remaining === undefined ? Math.max(0, limit - used) : measured.remaining;
    const fits =
      measured.remaining === undefined ? used + adding <= limit : remaining === null || adding <= remaining;
    const planLimit = caps.planLimits[feature];
    const paymentWouldFix =
      caps.accessLevel === 'locked' && (planLimit === null || used + adding <= planLimit);
    const decision: Decision = {
      ...base,
      allowed: fits,
      reason: fits ? 'within_limit' : paymentWouldFix ? 'payment_required' : 'limit_exceeded',
      limit,
      used,
      remaining,
    };
    return applyMode(decision, request, mode, true);
  }

  /** Monitor mode, and soft limits during a grace period, turn a denial into a recorded allowance. */
  async function applyMode(
    decision: Decision,
    request: CheckRequest,
    mode: EnforcementMode,
    isLimit: boolean,
  ) {
    if (decision.allowed) return decision;
    const softened =
      mode === 'monitor' ? 'monitor' : isLimit && decision.accessLevel === 'grace' ? 'grace' : undefined;
    if (softened === undefined) return decision;
    const allowed: Decision = { ...decision, allowed: true, enforcement: 'monitor' };
    await recordWouldDeny(allowed, request, softened);
    return allowed;
  }

  return { resolveSubject, capabilities, check };
}

function flagDenial(caps: Capabilities, feature: FlagName): DecisionReason {
  return caps.accessLevel === 'locked' && caps.planFlags[feature]
    ? 'payment_required'
    : 'feature_not_in_plan';
}
