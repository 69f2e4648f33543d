import type { FeatureName } from './catalog.js';

/**
 * - `enforce`: a denial is a denial.
 * - `monitor`: allow, but record what enforce would have denied and why (for rolling out a limit).
 * - `off`: allow without checking.
 */
export const ENFORCEMENT_MODES = ['enforce', 'monitor', 'off'] as const;
export type EnforcementMode = (typeof ENFORCEMENT_MODES)[number];

export interface EnforcementPolicy {
  readonly defaultMode: EnforcementMode;
  readonly overrides: Readonly<Partial<Record<FeatureName, EnforcementMode>>>;
}

export function modeFor(policy: EnforcementPolicy, feature: FeatureName): EnforcementMode {
  return policy.overrides[feature] ?? policy.defaultMode;
}

/** Where a feature's configured mode comes from: its own setting, or the default for every feature. */
export function modeSource(policy: EnforcementPolicy, feature: FeatureName): 'feature' | 'default' {
  return policy.overrides[feature] === undefined ? 'default' : 'feature';
}
