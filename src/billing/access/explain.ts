import { type Catalog, type FeatureName, isFlagName, type LimitName, type PlanName } from '../catalog.js';
import {
  type EnforcementMode,
  type EnforcementPolicy,
  type ModeSource,
  resolveMode,
} from '../enforcement.js';
import type { OrgId, OwnerId, UserId, WorkflowId, Workspace } from '../ids.js';
import type { OwnerSnapshot } from '../owner/snapshot.js';
import type { SubscriptionStatus } from '../subscription.js';
import type { AccessLevel, Capabilities } from './capabilities.js';
import { modeInForce } from './capabilities.js';
import {
  capabilitiesFor,
  DENY_REASONS,
  type Decision,
  type DecisionReason,
  enforcementFacts,
  measure,
  type ResolvedSubject,
  workflowLocked,
} from './decide.js';

/**
 * The decision trace of a check (`explain: true`): which inputs produced the answer, each with where it
 * came from, for support ("why was this denied?") without logs. Built only when asked, after the decision,
 * from the same functions the decision used (`decide.ts`, `capabilities.ts`, `enforcement.ts`), so it can
 * say nothing the decision did not do; it reads nothing from storage.
 */

/**
 * How the subject's owner was found: `none` (a user is their own owner), `cached` (an organization's
 * creator remembered in memory), `read` (an index row read for this request).
 */
export type MappingSource = 'none' | 'cached' | 'read';

/**
 * Where a limit or flag in force comes from: the plan, the free plan's while payment is locked, an
 * active enterprise contract, or a per-owner override (`overrides.ts`) on top of either.
 */
export type LimitSource = 'plan' | 'free_plan_while_locked' | 'override' | 'contract';

/** The source of one feature's value in force, as the check answer and the summary name it. */
export function limitSource(
  caps: Pick<Capabilities, 'accessLevel' | 'overrides' | 'contract'>,
  feature: FeatureName,
): LimitSource {
  if (caps.overrides?.features.has(feature)) return 'override';
  if (caps.accessLevel === 'locked') return 'free_plan_while_locked';
  return caps.contract ? 'contract' : 'plan';
}

export type ExplainStep =
  | {
      readonly step: 'owner';
      readonly subject: {
        readonly userId?: UserId | undefined;
        readonly orgId?: OrgId | undefined;
        readonly workflowId?: WorkflowId | undefined;
      };
      readonly workspace: Workspace;
      readonly owner: OwnerId;
      readonly mapping: MappingSource;
    }
  | {
      readonly step: 'plan';
      /** The plan as the decision names it (free without a subscription, or when access is free). */
      readonly plan: PlanName;
      /** The plan of the subscription, whatever its status; `null` without one. */
      readonly subscribedPlan: PlanName | null;
      readonly status: SubscriptionStatus | 'none';
      readonly accessLevel: AccessLevel;
    }
  | {
      readonly step: 'limit';
      readonly feature: LimitName;
      readonly limit: number | null;
      readonly source: LimitSource;
      /** The subscribed plan's limit, which payment in order would put in force. */
      readonly planLimit: number | null;
      /** The override in force for this limit (`source: override`), else `null`. */
      readonly override: { readonly limit: number | null; readonly expiresAt: string | null } | null;
      /** The active enterprise contract and its limit for this feature; `null` when none governs. */
      readonly contract: { readonly id: string; readonly limit: number | null } | null;
      /** Soft in a payment grace period: a denial is allowed and recorded (see `enforcement`). */
      readonly grace: boolean;
    }
  | {
      readonly step: 'flag';
      readonly feature: FeatureName;
      readonly enabled: boolean;
      readonly source: LimitSource;
      readonly planEnabled: boolean;
    }
  | {
      readonly step: 'usage';
      readonly feature: LimitName;
      /** What was counted: `not_counted` when the decision needed no count (off, unlimited, not applicable, locked). */
      readonly counted: Counted;
      readonly used: number | null;
      readonly adding: number | null;
      readonly remaining: number | null;
      /** For a meter: the usage period whose counter was read (also when nothing was counted). */
      readonly period: { readonly key: string; readonly start: string; readonly end: string } | null;
    }
  | {
      readonly step: 'enforcement';
      /**
       * The mode configured for the feature, and which setting decided it (`enforcement.ts` `resolveMode`):
       * the owner's own, a cohort rule (`cohortRule`, its index), the feature's, or the default.
       */
      readonly configured: EnforcementMode;
      readonly source: ModeSource;
      readonly cohortRule: number | null;
      /** What applied: `monitor` when a denial was softened by the configured mode or a grace period. */
      readonly applied: EnforcementMode;
      readonly softenedBy: 'monitor' | 'grace' | null;
    }
  | {
      readonly step: 'lock';
      readonly workflowId: WorkflowId;
      /** Locked by the owner's stored lock set (over the workflow limits in force). */
      readonly locked: boolean;
      /** Only executions are refused for a locked workflow. */
      readonly applies: boolean;
    }
  | { readonly step: 'decision'; readonly allowed: boolean; readonly reason: DecisionReason };

export type Counted =
  | 'period_usage'
  | 'owner_workflows'
  | 'org_workflows'
  | 'owner_credentials'
  | 'seats'
  | 'workflow_nodes'
  | 'not_counted';

export interface Explanation {
  readonly steps: readonly ExplainStep[];
}

export interface ExplainInput {
  readonly snapshot: OwnerSnapshot;
  readonly catalog: Catalog;
  readonly enforcement: EnforcementPolicy;
  readonly subject: Extract<ExplainStep, { step: 'owner' }>['subject'];
  readonly resolved: ResolvedSubject;
  readonly mapping: MappingSource;
  readonly feature: FeatureName;
  readonly quantity?: number | undefined;
  /** The decision `decideCheck` gave for this input. */
  readonly decision: Decision;
}

const isDenial = (reason: DecisionReason) => (DENY_REASONS as readonly DecisionReason[]).includes(reason);

const COUNTED: Readonly<Record<LimitName, Counted>> = {
  executions: 'period_usage',
  workflows: 'owner_workflows',
  workflows_per_org: 'org_workflows',
  credentials: 'owner_credentials',
  seats: 'seats',
  nodes_per_workflow: 'workflow_nodes',
};

export function explainCheck(input: ExplainInput): Explanation {
  const { snapshot, catalog, enforcement, resolved, feature, quantity, decision } = input;
  const caps = capabilitiesFor(snapshot, catalog);
  const source = limitSource(caps, feature);
  const steps: ExplainStep[] = [
    {
      step: 'owner',
      subject: input.subject,
      workspace: resolved.workspace,
      owner: resolved.ownerId,
      mapping: input.mapping,
    },
    {
      step: 'plan',
      plan: caps.plan,
      subscribedPlan: caps.subscription?.plan ?? null,
      status: caps.status,
      accessLevel: caps.accessLevel,
    },
  ];
  if (isFlagName(feature)) {
    steps.push({
      step: 'flag',
      feature,
      enabled: caps.flags[feature],
      source,
      planEnabled: caps.planFlags[feature],
    });
  } else {
    steps.push({
      step: 'limit',
      feature,
      limit: caps.limits[feature],
      source,
      planLimit: caps.planLimits[feature],
      override:
        source === 'override'
          ? { limit: caps.limits[feature], expiresAt: caps.overrides?.expiresAt ?? null }
          : null,
      contract: caps.contract ? { id: caps.contract.id, limit: caps.contract.limits[feature] } : null,
      grace: caps.accessLevel === 'grace',
    });
    // The decision counted only when it reports a count; measuring again is pure (the same snapshot).
    const measured =
      decision.used === null ? undefined : measure(snapshot, caps, feature, resolved, quantity);
    const counted = measured !== undefined && measured !== 'not_applicable' ? measured : undefined;
    steps.push({
      step: 'usage',
      feature,
      counted: counted ? COUNTED[feature] : 'not_counted',
      used: counted?.used ?? null,
      adding: counted?.adding ?? null,
      remaining: decision.remaining,
      period:
        feature === 'executions'
          ? {
              key: caps.period.key,
              start: caps.period.start.toISOString(),
              end: caps.period.end.toISOString(),
            }
          : null,
    });
  }
  const resolvedMode = resolveMode(enforcement, feature, enforcementFacts(snapshot));
  const configured = resolvedMode.mode;
  const { softenedBy } = modeInForce(configured, caps, !isFlagName(feature));
  steps.push({
    step: 'enforcement',
    configured,
    source: resolvedMode.source,
    cohortRule: resolvedMode.rule ?? null,
    applied: decision.enforcement,
    // Named only where it turned a denial into an allowance (the reason still says what enforce answers).
    softenedBy: decision.allowed && isDenial(decision.reason) ? (softenedBy ?? null) : null,
  });
  if (resolved.workflow) {
    steps.push({
      step: 'lock',
      workflowId: resolved.workflow.workflowId,
      locked: workflowLocked(snapshot, caps, resolved.workflow),
      applies: feature === 'executions' && configured !== 'off',
    });
  }
  steps.push({ step: 'decision', allowed: decision.allowed, reason: decision.reason });
  return { steps };
}
