import {
  type Catalog,
  type FeatureName,
  type FlagName,
  isFlagName,
  type LimitName,
  METERS,
  type MeterName,
  meterAllowance,
  type PlanName,
} from '../catalog.js';
import type { ContractState } from '../contracts/model.js';
import {
  type EnforcementMode,
  type EnforcementPolicy,
  modeFor,
  type OwnerEnforcementFacts,
} from '../enforcement.js';
import { validationError } from '../errors.js';
import type { OwnerId, WorkflowId, Workspace } from '../ids.js';
import { meterStatus, type OwnerSnapshot, ownerCreatedAt, seatsInUse } from '../owner/snapshot.js';
import type { UsagePeriod } from '../periods.js';
import type { SubscriptionState } from '../subscription.js';
import { withinLockLimits } from './allocation.js';
import {
  type AccessLevel,
  type Capabilities,
  capabilitiesOf,
  denialReason,
  flagDenialReason,
  modeInForce,
} from './capabilities.js';
import { emptyLockSet, type LockSet, lockBasis, workflowLock } from './locks.js';
import type { OwnerOverrides } from './overrides.js';

/**
 * The one decision path: pure functions from an owner snapshot and a request to an answer. Entitlement
 * checks, consumption terms, directory creates and the summary all decide here, so two answers about
 * the same owner at the same moment cannot disagree.
 */

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

/** A denial that `monitor` (or a grace period) turned into an allowance: recorded for the owner. */
export interface WouldDeny {
  readonly decision: Decision;
  readonly why: 'monitor' | 'grace';
  readonly quantity: number;
}

/** A subject resolved through the directory: its owner, its workspace, and the workflow it names. */
export interface ResolvedSubject {
  readonly ownerId: OwnerId;
  readonly workspace: Workspace;
  readonly workflow?: {
    readonly workflowId: WorkflowId;
    readonly workspace: Workspace;
    readonly nodeCount: number;
  };
}

/** What is being counted against a limit, and how much more is asked for. */
export interface Measured {
  readonly used: number;
  readonly adding: number;
  /** For meters: allowance left plus credits (else `limit - used`). */
  readonly remaining?: number | null;
  /** For meters: what the allowance covered (the base of `denialReason`) and the credits on top. */
  readonly allowanceUsed?: number;
  readonly credits?: number;
}

/**
 * Parts of a snapshot a change replaces, to ask what would be in force after it: a key that is present
 * replaces the snapshot's part, `undefined` included (no subscription, no contract, no overrides).
 */
export interface SnapshotChange {
  readonly subscription?: SubscriptionState | undefined;
  readonly contract?: ContractState | undefined;
  readonly overrides?: OwnerOverrides | undefined;
}

/**
 * What is in force for the snapshot's owner at `at` (the read instant by default), or after `change`:
 * the subscription's plan, an active contract in its place, overrides on top (`capabilitiesOf`).
 */
export function capabilitiesFor(
  snapshot: OwnerSnapshot,
  catalog: Catalog,
  change: SnapshotChange = {},
  at: Date = snapshot.readAt,
): Capabilities {
  const subscription = 'subscription' in change ? change.subscription : snapshot.subscription?.state;
  const contract = 'contract' in change ? change.contract : snapshot.contract?.state;
  const overrides = 'overrides' in change ? change.overrides : snapshot.overrides?.value;
  return capabilitiesOf(snapshot.ownerId, subscription, catalog, at, { contract, overrides });
}

/** What enforcement resolution needs from the snapshot: the owner's own setting and its creation instant. */
export function enforcementFacts(snapshot: OwnerSnapshot): OwnerEnforcementFacts {
  return { setting: snapshot.enforcement?.value, createdAt: ownerCreatedAt(snapshot) };
}

/** How much of a limit is in use for a subject, from the snapshot alone. */
export function measure(
  snapshot: OwnerSnapshot,
  caps: Capabilities,
  feature: LimitName,
  resolved: Pick<ResolvedSubject, 'workspace' | 'workflow'>,
  quantity: number | undefined,
): Measured | 'not_applicable' {
  switch (feature) {
    case 'executions': {
      const status = meterStatus(snapshot, 'executions', caps.period, caps.limits.executions);
      return {
        used: status.counter.used,
        adding: quantity ?? 1,
        remaining: status.remaining,
        allowanceUsed: status.counter.allowanceUsed,
        credits: status.credits,
      };
    }
    case 'workflows':
      return { used: snapshot.allocation.workflows, adding: quantity ?? 1 };
    case 'workflows_per_org': {
      if (resolved.workspace.kind !== 'org') return 'not_applicable';
      const org = snapshot.orgs.get(resolved.workspace.orgId);
      return { used: org?.row.workflows ?? 0, adding: quantity ?? 1 };
    }
    case 'credentials':
      return { used: snapshot.allocation.credentials, adding: quantity ?? 1 };
    case 'seats':
      return { used: seatsInUse(snapshot), adding: quantity ?? 1 };
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

/** A limit decision from what is measured. */
export function decideLimit(
  caps: Capabilities,
  feature: LimitName,
  measured: Measured | 'not_applicable',
  configured: EnforcementMode,
): { readonly decision: Decision; readonly wouldDeny?: WouldDeny } {
  const base = baseOf(caps, feature, configured);
  const limit = caps.limits[feature];
  if (configured === 'off')
    return {
      decision: { ...base, allowed: true, reason: 'enforcement_off', limit, used: null, remaining: null },
    };
  if (limit === null)
    return { decision: { ...base, allowed: true, reason: 'unlimited', limit, used: null, remaining: null } };
  if (measured === 'not_applicable')
    return {
      decision: { ...base, allowed: true, reason: 'not_applicable', limit, used: null, remaining: null },
    };
  const { used, adding } = measured;
  // Allocations: what exists plus what would be added must fit the limit. Meters: what is left (the
  // allowance plus credits) must cover the request.
  const meter = measured.remaining !== undefined;
  const remaining = meter ? (measured.remaining ?? null) : Math.max(0, limit - used);
  const fits = meter ? remaining === null || adding <= remaining : used + adding <= limit;
  const reason = fits
    ? 'within_limit'
    : denialReason(caps, feature, measured.allowanceUsed ?? used, adding, measured.credits ?? 0);
  return soften({ ...base, allowed: fits, reason, limit, used, remaining }, adding, caps, configured, true);
}

export function decideFlag(
  caps: Capabilities,
  feature: FlagName,
  configured: EnforcementMode,
): { readonly decision: Decision; readonly wouldDeny?: WouldDeny } {
  const base = { ...baseOf(caps, feature, configured), limit: null, used: null, remaining: null };
  if (configured === 'off') return { decision: { ...base, allowed: true, reason: 'enforcement_off' } };
  const on = caps.flags[feature];
  return soften(
    { ...base, allowed: on, reason: on ? 'feature_enabled' : flagDenialReason(caps, feature) },
    1,
    caps,
    configured,
    false,
  );
}

export interface CheckInput {
  readonly snapshot: OwnerSnapshot;
  readonly catalog: Catalog;
  readonly enforcement: EnforcementPolicy;
  readonly resolved: ResolvedSubject;
  readonly feature: FeatureName;
  readonly quantity?: number | undefined;
}

/** "May this subject do this?" */
export function decideCheck(input: CheckInput): {
  readonly decision: Decision;
  readonly wouldDeny?: WouldDeny;
} {
  const { snapshot, catalog, enforcement, resolved, feature, quantity } = input;
  if (isFlagName(feature) && quantity !== undefined) {
    throw validationError('quantity_not_applicable', `${feature} is a feature flag; it takes no quantity.`);
  }
  const caps = capabilitiesFor(snapshot, catalog);
  const configured = modeFor(enforcement, feature, enforcementFacts(snapshot));
  if (isFlagName(feature)) return decideFlag(caps, feature, configured);
  if (feature === 'executions' && configured !== 'off' && resolved.workflow) {
    const locked = workflowLocked(snapshot, caps, resolved.workflow);
    if (locked) {
      const base = baseOf(caps, feature, configured);
      return soften(
        {
          ...base,
          allowed: false,
          reason: 'resource_locked',
          limit: caps.limits[feature],
          used: null,
          remaining: null,
        },
        quantity ?? 1,
        caps,
        configured,
        true,
      );
    }
  }
  return decideLimit(caps, feature, measure(snapshot, caps, feature, resolved, quantity), configured);
}

/**
 * The lock set in force: empty while every scope is within its limit, else the stored set if it was
 * computed for these limits, else `'stale'` (the limits changed without the set following, e.g. a row
 * written by hand): the caller repairs it (`OwnerAccess.read`) before deciding.
 */
export function lockSetInForce(
  snapshot: OwnerSnapshot,
  caps: Pick<Capabilities, 'limits'>,
): LockSet | 'stale' {
  const { allocation } = snapshot;
  const orgs = [...snapshot.orgs.values()].map((org) => org.row.workflows);
  if (
    withinLockLimits(
      { workflows: allocation.workflows, credentials: allocation.credentials, orgs },
      caps.limits,
    )
  )
    return emptyLockSet(caps.limits);
  const set = allocation.locks;
  return set !== undefined && set.basis === lockBasis(caps.limits) ? set : 'stale';
}

/** A snapshot whose lock set does not match its limits reached a decision. */
export class StaleLockSetError extends Error {
  readonly code = 'stale_lock_set';
  constructor(ownerId: OwnerId) {
    super(`The lock set of ${ownerId} does not match its limits; read the owner through OwnerAccess.read`);
    this.name = 'StaleLockSetError';
  }
}

/** Whether a workflow is locked over a limit, from the snapshot's lock set. */
export function workflowLocked(
  snapshot: OwnerSnapshot,
  caps: Capabilities,
  workflow: { readonly workflowId: WorkflowId; readonly workspace: Workspace },
): boolean {
  const { limits } = caps;
  if (limits.workflows === null && limits.workflows_per_org === null) return false;
  const inOrg =
    workflow.workspace.kind === 'org' ? (snapshot.orgs.get(workflow.workspace.orgId)?.row.workflows ?? 0) : 0;
  // A workflow can only be locked if its organization or the owner's total is over; else nothing to look up.
  const overOrg = limits.workflows_per_org !== null && inOrg > limits.workflows_per_org;
  const overTotal = limits.workflows !== null && snapshot.allocation.workflows > limits.workflows;
  if (!overOrg && !overTotal) return false;
  const set = lockSetInForce(snapshot, caps);
  if (set === 'stale') throw new StaleLockSetError(snapshot.ownerId);
  return workflowLock(set, { id: workflow.workflowId, workspace: workflow.workspace }) !== undefined;
}

/** The terms of one consumption: the allowance and window in force, and how a shortfall is treated. */
export interface ConsumeTerms {
  readonly allowance: number | null;
  readonly period: UsagePeriod;
  readonly mode: EnforcementMode;
  /** Why an enforced shortfall is denied, given what the allowance covered and the credits on hand. */
  readonly denial?: (
    allowanceUsed: number,
    quantity: number,
    credits: number,
  ) => 'limit_exceeded' | 'payment_required';
  /** Set when the subject may not consume at all: a locked workflow (unless the key was answered before). */
  readonly refusal?: 'resource_locked';
}

/** The terms `consume` applies for one subject, from the same rules as a check. */
export function consumeTerms(
  snapshot: OwnerSnapshot,
  catalog: Catalog,
  enforcement: EnforcementPolicy,
  meter: MeterName,
  workflow: ResolvedSubject['workflow'],
): ConsumeTerms {
  const caps = capabilitiesFor(snapshot, catalog);
  const { mode } = modeInForce(modeFor(enforcement, meter, enforcementFacts(snapshot)), caps, true);
  const feature = METERS[meter].allowanceLimit;
  const locked = mode === 'enforce' && workflow !== undefined && workflowLocked(snapshot, caps, workflow);
  return {
    allowance: meterAllowance(caps.limits, meter),
    period: caps.period,
    mode,
    denial: (allowanceUsed, quantity, credits) =>
      denialReason(caps, feature, allowanceUsed, quantity, credits),
    ...(locked ? { refusal: 'resource_locked' as const } : {}),
  };
}

function baseOf(caps: Capabilities, feature: FeatureName, configured: EnforcementMode) {
  return {
    feature,
    owner: caps.ownerId,
    plan: caps.plan,
    accessLevel: caps.accessLevel,
    enforcement: configured,
  };
}

/** Monitor mode, and soft limits during a grace period, turn a denial into a recorded allowance. */
function soften(
  decision: Decision,
  quantity: number,
  caps: Capabilities,
  configured: EnforcementMode,
  isLimit: boolean,
): { readonly decision: Decision; readonly wouldDeny?: WouldDeny } {
  if (decision.allowed) return { decision };
  const { softenedBy } = modeInForce(configured, caps, isLimit);
  if (softenedBy === undefined) return { decision };
  const allowed: Decision = { ...decision, allowed: true, enforcement: 'monitor' };
  return { decision: allowed, wouldDeny: { decision: allowed, why: softenedBy, quantity } };
}

/** A directory write that claims an allocation: a new item, an item moved, a new member. */
export interface CreateRequest {
  readonly kind: 'workflow' | 'credential' | 'member';
  /** Where the item goes (for a member: the organization). */
  readonly workspace: Workspace;
  /** For a workflow: its node count. */
  readonly nodeCount?: number;
  /** For a workflow already stored: its node count now (a count that does not grow is never refused). */
  readonly previousNodeCount?: number;
  /** Only the node count changes: nothing new is counted. */
  readonly nodeCountOnly?: boolean;
  /** The item moves between two workspaces of this owner: the owner's total does not grow. */
  readonly withinOwner?: boolean;
  /** For a member: the person is new to the owner's organizations (takes a seat). */
  readonly newSeat?: boolean;
  /** `false` records the item without enforcing limits (a backfill); it may then be locked. */
  readonly enforce: boolean;
}

export type CreateDecision =
  | { readonly allowed: true; readonly wouldDeny: readonly WouldDeny[] }
  | { readonly allowed: false; readonly decision: Decision };

/**
 * Whether a directory write may claim what it adds, with the rules of a check: each limit it raises
 * must fit, under the owner's enforcement mode (a would-be denial is recorded under `monitor` and in a
 * grace period). A limit it does not raise is never checked, so an update of an owner over a limit
 * after a downgrade is never refused.
 */
export function decideCreate(
  snapshot: OwnerSnapshot,
  catalog: Catalog,
  enforcement: EnforcementPolicy,
  request: CreateRequest,
): CreateDecision {
  const caps = capabilitiesFor(snapshot, catalog);
  const asks: Array<{ feature: LimitName; quantity: number }> = [];
  if (request.kind === 'workflow') {
    const nodes = request.nodeCount ?? 0;
    if (!request.nodeCountOnly) {
      if (!request.withinOwner) asks.push({ feature: 'workflows', quantity: 1 });
      if (request.workspace.kind === 'org') asks.push({ feature: 'workflows_per_org', quantity: 1 });
    }
    if (request.previousNodeCount === undefined || nodes > request.previousNodeCount)
      asks.push({ feature: 'nodes_per_workflow', quantity: nodes });
  } else if (request.kind === 'credential') {
    if (!request.withinOwner) asks.push({ feature: 'credentials', quantity: 1 });
  } else if (request.newSeat) asks.push({ feature: 'seats', quantity: 1 });

  const wouldDeny: WouldDeny[] = [];
  for (const { feature, quantity } of asks) {
    const configured = request.enforce ? modeFor(enforcement, feature, enforcementFacts(snapshot)) : 'off';
    const measured = measure(snapshot, caps, feature, { workspace: request.workspace }, quantity);
    const { decision, wouldDeny: softened } = decideLimit(caps, feature, measured, configured);
    if (!decision.allowed) return { allowed: false, decision };
    if (softened) wouldDeny.push(softened);
  }
  return { allowed: true, wouldDeny };
}
