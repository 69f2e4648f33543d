import type { Catalog, FeatureName, LimitName, PlanFlags, PlanLimits, PlanName } from '../catalog.js';
import type { ContractState } from '../contracts/model.js';
import type { EnforcementMode } from '../enforcement.js';
import type { OwnerId } from '../ids.js';
import { currentPeriod, type UsagePeriod } from '../periods.js';
import type { SubscriptionState, SubscriptionStatus } from '../subscription.js';
import { type ContractInForce, withContract } from './contract-terms.js';
import { type AccessLevel, accessLevelOf } from './levels.js';
import { type AppliedOverrides, type OwnerOverrides, withOverrides } from './overrides.js';

/**
 * Payment state -> access level -> what is in force, for one owner at one instant. The one place where
 * these rules live (ARCHITECTURE.md, Entitlements): checks, consumption, directory creates, locks and
 * the summary all ask here.
 */

/** What a payment state means for access: the rule lives in `levels.ts`. */
export { type AccessLevel, accessLevelOf } from './levels.js';

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
  /** Per-owner overrides in force on top of the plan (`overrides.ts`); `undefined` when none apply. */
  readonly overrides: AppliedOverrides | undefined;
  /** Set while an enterprise contract governs (`contract-terms.ts`); then `plan` is `enterprise`. */
  readonly contract?: ContractInForce | undefined;
}

/** Capabilities before overrides: the subscribed plan's, or an active contract's in their place. */
export type BaseCapabilities = Omit<Capabilities, 'overrides'>;

/** The owner's own terms over its plan, as its snapshot holds them. */
export interface OwnerLayers {
  /** An enterprise contract: while active it governs in place of the subscription (`contract-terms.ts`). */
  readonly contract?: ContractState | undefined;
  /** Per-owner overrides, applied last, on top of whichever governs (`overrides.ts`). */
  readonly overrides?: OwnerOverrides | undefined;
}

export function capabilitiesOf(
  ownerId: OwnerId,
  subscription: SubscriptionState | undefined,
  catalog: Catalog,
  now: Date,
  layers: OwnerLayers = {},
): Capabilities {
  const status = subscription?.status ?? 'none';
  const accessLevel = accessLevelOf(status);
  const free = catalog.free;
  const subscribed = subscription && accessLevel !== 'free' ? catalog[subscription.plan] : free;
  const planLimits: PlanLimits = {
    ...subscribed.limits,
    // Per-seat plans bill every person (`seats.ts`): nobody is refused for lack of pre-bought seats,
    // only by the owner's own cap (`seatCapRefusal`). Other plans keep seats as a hard limit.
    seats: subscribed.perSeat ? null : subscribed.limits.seats,
  };
  const locked = accessLevel === 'locked';
  const base: BaseCapabilities = {
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
    period: currentPeriod(now, subscription),
  };
  // The plan, then an active contract in its place, then overrides on top of whichever governs.
  return withOverrides(withContract(base, layers.contract, catalog, now), layers.overrides, now);
}

/**
 * How a denial is applied: as configured, except that limits are soft during a payment grace period
 * (allowed, and the would-be denial recorded, as under `monitor`).
 */
export function modeInForce(
  configured: EnforcementMode,
  caps: Pick<Capabilities, 'accessLevel'>,
  isLimit: boolean,
): { readonly mode: EnforcementMode; readonly softenedBy: 'monitor' | 'grace' | undefined } {
  if (configured === 'monitor') return { mode: 'monitor', softenedBy: 'monitor' };
  if (configured === 'enforce' && isLimit && caps.accessLevel === 'grace')
    return { mode: 'monitor', softenedBy: 'grace' };
  return { mode: configured, softenedBy: undefined };
}

/**
 * Why a request over a limit is denied: `payment_required` when the account is locked for payment and
 * the subscribed plan (with `extra`, the credits that also cover a meter) would allow it, otherwise
 * `limit_exceeded`. `used` is what the limit has covered so far (for a meter, what its allowance covered).
 */
export function denialReason(
  caps: Pick<Capabilities, 'accessLevel' | 'planLimits'>,
  feature: LimitName,
  used: number,
  adding: number,
  extra = 0,
): 'payment_required' | 'limit_exceeded' {
  if (caps.accessLevel !== 'locked') return 'limit_exceeded';
  const planLimit = caps.planLimits[feature];
  return planLimit === null || used + adding <= planLimit + extra ? 'payment_required' : 'limit_exceeded';
}

/** A flag off now: paying would turn it on, or the plan does not have it. */
export function flagDenialReason(
  caps: Pick<Capabilities, 'accessLevel' | 'planFlags'>,
  feature: Exclude<FeatureName, LimitName>,
): 'payment_required' | 'feature_not_in_plan' {
  return caps.accessLevel === 'locked' && caps.planFlags[feature]
    ? 'payment_required'
    : 'feature_not_in_plan';
}
