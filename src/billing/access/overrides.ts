import { z } from 'zod';
import {
  type FeatureName,
  FLAG_NAMES,
  type FlagName,
  LIMIT_NAMES,
  type LimitName,
  type PlanFlags,
  type PlanLimits,
} from '../catalog.js';

/**
 * Per-owner overrides (`PUT /api/ops/owners/{ownerId}/overrides`): limits and flags an operator sets for
 * one owner, on top of whatever the plan (or, once there is one, the enterprise contract) puts in force.
 * Stored in the owner's snapshot (`s|o|ovr`), so every decision reads them in the same range query as the
 * rest, and applied here, in one place, by `capabilitiesOf`: checks, consumption, directory creates,
 * locks and the summary all see the same values at once.
 *
 * An override is the operator's word for this owner, so it holds whatever the payment state (a locked
 * account keeps an overridden limit; everything else falls back to the free plan as usual). It lapses by
 * itself at `expiresAt`: decisions compare it with the instant the snapshot was read, so no write is
 * needed, and the lock set follows on the next read (its basis no longer matches the limits in force,
 * `owner-access.ts` repairs it). A lowered limit locks items, never deletes them.
 */

const limitValue = z.number().int().nonnegative().max(1_000_000_000).nullable();

/** Limits and flags by catalog name; an unknown name is refused (strict objects). */
export const overrideLimitsSchema = z.strictObject(
  Object.fromEntries(LIMIT_NAMES.map((n) => [n, limitValue.optional()])) as Record<
    LimitName,
    z.ZodOptional<typeof limitValue>
  >,
);
export const overrideFlagsSchema = z.strictObject(
  Object.fromEntries(FLAG_NAMES.map((n) => [n, z.boolean().optional()])) as Record<
    FlagName,
    z.ZodOptional<z.ZodBoolean>
  >,
);

export interface OwnerOverrides {
  /** `null`: unlimited. */
  readonly limits: Readonly<Partial<Record<LimitName, number | null>>>;
  readonly flags: Readonly<Partial<Record<FlagName, boolean>>>;
  /** ISO instant from which the overrides no longer apply; `null`: until removed. */
  readonly expiresAt: string | null;
}

/** The stored (and audited) shape of a set of overrides. */
export const ownerOverridesSchema = z.object({
  limits: overrideLimitsSchema,
  flags: overrideFlagsSchema,
  expiresAt: z.iso.datetime({ offset: true }).nullable(),
});

/** Whether overrides still apply at `now` (the instant the snapshot was read). */
export function overridesActive(
  overrides: OwnerOverrides | undefined,
  now: Date,
): overrides is OwnerOverrides {
  return (
    overrides !== undefined &&
    (overrides.expiresAt === null || now.getTime() < Date.parse(overrides.expiresAt))
  );
}

/** Overrides that applied at `then` and no longer do at `now`: the limits in force changed by time alone. */
export const overridesLapsedSince = (overrides: OwnerOverrides | undefined, then: Date, now: Date): boolean =>
  overridesActive(overrides, then) && !overridesActive(overrides, now);

/** What overrides put in force: the names they change, and until when. */
export interface AppliedOverrides {
  readonly features: ReadonlySet<FeatureName>;
  readonly expiresAt: string | null;
}

interface Layer {
  readonly limits: PlanLimits;
  readonly flags: PlanFlags;
  readonly planLimits: PlanLimits;
  readonly planFlags: PlanFlags;
}

/**
 * The limits and flags with active overrides on top: both what is in force and what the subscribed plan
 * "would give" (so a `payment_required` reason never promises less than the override grants).
 */
export function withOverrides<T extends Layer>(
  base: T,
  overrides: OwnerOverrides | undefined,
  now: Date,
): T & { readonly overrides: AppliedOverrides | undefined } {
  if (!overridesActive(overrides, now)) return { ...base, overrides: undefined };
  const limits: Record<string, number | null> = {};
  const flags: Record<string, boolean> = {};
  const features = new Set<FeatureName>();
  for (const name of LIMIT_NAMES) {
    const value = overrides.limits[name];
    if (value === undefined) continue;
    limits[name] = value;
    features.add(name);
  }
  for (const name of FLAG_NAMES) {
    const value = overrides.flags[name];
    if (value === undefined) continue;
    flags[name] = value;
    features.add(name);
  }
  return {
    ...base,
    limits: { ...base.limits, ...limits },
    flags: { ...base.flags, ...flags },
    planLimits: { ...base.planLimits, ...limits },
    planFlags: { ...base.planFlags, ...flags },
    overrides: { features, expiresAt: overrides.expiresAt },
  };
}

/** Whether `feature`'s value in force comes from an override. */
export const isOverridden = (
  caps: { readonly overrides: AppliedOverrides | undefined },
  feature: FeatureName,
): boolean => caps.overrides?.features.has(feature) ?? false;
