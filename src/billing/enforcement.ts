import { z } from 'zod';
import { FEATURE_NAMES, type FeatureName } from './catalog.js';

/**
 * - `enforce`: a denial is a denial.
 * - `monitor`: allow, but record what enforce would have denied and why (for rolling out a limit).
 * - `off`: allow without checking.
 */
export const ENFORCEMENT_MODES = ['enforce', 'monitor', 'off'] as const;
export type EnforcementMode = (typeof ENFORCEMENT_MODES)[number];

/**
 * A rollout rule by owner age (`PUT /api/ops/enforcement/cohorts`): owners created in
 * `[createdFrom, createdBefore)` get `mode`, for `features` (every feature when absent). Either bound may
 * be left out. An owner whose creation instant is unknown (its state predates the record of it, see
 * `ownerCreatedAt`) counts as older than any instant: it matches a rule with only `createdBefore`, never
 * one with `createdFrom`.
 */
export interface CohortRule {
  readonly createdFrom?: string | undefined;
  readonly createdBefore?: string | undefined;
  readonly mode: EnforcementMode;
  readonly features?: readonly FeatureName[] | undefined;
}

export interface EnforcementPolicy {
  /** `ENFORCEMENT_DEFAULT`. */
  readonly defaultMode: EnforcementMode;
  /** `ENFORCEMENT_OVERRIDES`: per feature. */
  readonly overrides: Readonly<Partial<Record<FeatureName, EnforcementMode>>>;
  /** The cohort rules in force (a global ops setting, `ops/cohorts.ts`); the first that matches wins. */
  readonly cohorts?: readonly CohortRule[] | undefined;
}

/** Where enforcement can be resolved without I/O: a fixed policy (tests, tools), or the live settings. */
export interface EnforcementSource {
  /** The policy in force now: configuration plus the cohort rules (cached briefly, `ops/cohorts.ts`). */
  current(): Promise<EnforcementPolicy>;
}

export const fixedEnforcement = (policy: EnforcementPolicy): EnforcementSource => ({
  current: async () => policy,
});

/** A per-owner setting (`PUT /api/ops/owners/{ownerId}/enforcement`), stored in its snapshot (`s|o|enf`). */
export interface OwnerEnforcement {
  /** For every feature without its own entry in `features`. */
  readonly mode: EnforcementMode;
  readonly features: Readonly<Partial<Record<FeatureName, EnforcementMode>>>;
}

const modeSchema = z.enum(ENFORCEMENT_MODES);
export const featureModesSchema = z.strictObject(
  Object.fromEntries(FEATURE_NAMES.map((n) => [n, modeSchema.optional()])) as Record<
    FeatureName,
    z.ZodOptional<typeof modeSchema>
  >,
);
export const ownerEnforcementSchema = z.object({ mode: modeSchema, features: featureModesSchema });

/** What resolution needs to know about the owner, from its snapshot. */
export interface OwnerEnforcementFacts {
  readonly setting: OwnerEnforcement | undefined;
  /** When the owner came to be; `'unknown'` for an owner older than the record (see `CohortRule`). */
  readonly createdAt: Date | 'unknown';
}

/** Which setting decided a feature's mode. */
export type ModeSource = 'owner' | 'cohort' | 'feature' | 'default';

export interface ResolvedMode {
  readonly mode: EnforcementMode;
  readonly source: ModeSource;
  /** For `cohort`: the index of the rule that matched. */
  readonly rule?: number;
}

function cohortMatches(rule: CohortRule, feature: FeatureName, createdAt: Date | 'unknown'): boolean {
  if (rule.features !== undefined && !rule.features.includes(feature)) return false;
  if (createdAt === 'unknown') return rule.createdFrom === undefined;
  const at = createdAt.getTime();
  if (rule.createdFrom !== undefined && at < Date.parse(rule.createdFrom)) return false;
  if (rule.createdBefore !== undefined && at >= Date.parse(rule.createdBefore)) return false;
  return true;
}

/**
 * The mode a feature is enforced with for one owner. Resolution order, the first that has a say wins:
 * 1. the owner's own setting (its entry for the feature, then its mode for every feature);
 * 2. the first cohort rule that matches the owner's creation instant and the feature;
 * 3. the feature's configured mode (`ENFORCEMENT_OVERRIDES`);
 * 4. the default (`ENFORCEMENT_DEFAULT`).
 * Without `owner` (no snapshot at hand) steps 1 and 2 are skipped.
 */
export function resolveMode(
  policy: EnforcementPolicy,
  feature: FeatureName,
  owner?: OwnerEnforcementFacts,
): ResolvedMode {
  if (owner?.setting) return { mode: owner.setting.features[feature] ?? owner.setting.mode, source: 'owner' };
  if (owner) {
    const rules = policy.cohorts ?? [];
    const rule = rules.findIndex((r) => cohortMatches(r, feature, owner.createdAt));
    const found = rules[rule];
    if (found) return { mode: found.mode, source: 'cohort', rule };
  }
  const configured = policy.overrides[feature];
  if (configured !== undefined) return { mode: configured, source: 'feature' };
  return { mode: policy.defaultMode, source: 'default' };
}

export function modeFor(
  policy: EnforcementPolicy,
  feature: FeatureName,
  owner?: OwnerEnforcementFacts,
): EnforcementMode {
  return resolveMode(policy, feature, owner).mode;
}

/** Where a feature's mode comes from (see `resolveMode`). */
export function modeSource(
  policy: EnforcementPolicy,
  feature: FeatureName,
  owner?: OwnerEnforcementFacts,
): ModeSource {
  return resolveMode(policy, feature, owner).source;
}
