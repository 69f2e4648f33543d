import { z } from 'zod';
import { auditAction, GLOBAL_AUDIT_PARTITION, type RevertHandler } from '../audit/entry.js';
import { FEATURE_NAMES } from '../catalog.js';
import type { Clock } from '../clock.js';
import {
  type CohortRule,
  ENFORCEMENT_MODES,
  type EnforcementPolicy,
  type EnforcementSource,
} from '../enforcement.js';
import { CorruptRowError, parseRow } from '../owner/rows.js';
import { answer, commit, write } from '../storage/commit.js';
import type { EntityTable, StoredEntity, TransactionAction } from '../store.js';
import { type AdminChange, adminAudit, UnrevertibleBeforeError } from './admin-change.js';

/**
 * Enforcement cohorts: a global rollout setting ("owners created before 2026-12-01: monitor; after:
 * enforce"), `PUT/GET /api/ops/enforcement/cohorts`. It concerns no single owner, so it lives in the
 * global ops partition of the billing table (`ops|global`: owner ids cannot contain `|`), beside the
 * audit rows of its changes, so a change and its audit row are one transaction.
 *
 * Every check, consumption and directory write needs it. Reading it each time would add a round trip
 * to every decision and make one partition the hottest in the table, so each process keeps it for
 * `ttlMs` (30 seconds by default): a change reaches every process within that, and the process that
 * made it at once. A rollout setting tolerates half a minute; a per-owner setting, which must apply at
 * once, lives in the owner's snapshot instead (`owner-enforcement.ts`). A failed read is an error,
 * never "no rules".
 */

export const COHORTS_ROW = 'settings|enforcement_cohorts';
export const COHORT_RULES_MAX = 20;

const instant = z.iso.datetime({ offset: true });

export const cohortRuleSchema = z
  .strictObject({
    createdFrom: instant.optional(),
    createdBefore: instant.optional(),
    mode: z.enum(ENFORCEMENT_MODES),
    features: z.array(z.enum(FEATURE_NAMES)).min(1).optional(),
  })
  .refine(
    (rule) =>
      rule.createdFrom === undefined ||
      rule.createdBefore === undefined ||
      Date.parse(rule.createdFrom) < Date.parse(rule.createdBefore),
    { message: 'createdFrom must be before createdBefore', path: ['createdBefore'] },
  );
export const cohortRulesSchema = z.array(cohortRuleSchema).max(COHORT_RULES_MAX);

const cohortsRowSchema = z.object({ rules: z.string(), updatedAt: z.string(), updatedBy: z.string() });

export interface CohortsView {
  readonly rules: readonly CohortRule[];
  /** `null` while never set. */
  readonly updatedAt: string | null;
  readonly updatedBy: string | null;
}

export interface CohortSettings extends EnforcementSource {
  /** The rules as stored now (not the cached copy). */
  read(): Promise<CohortsView>;
  /** Replaces the rules (an empty list removes them), audited with the change. */
  set(
    rules: readonly CohortRule[],
    change: AdminChange,
  ): Promise<CohortsView & { readonly changed: boolean }>;
  /** Undoes a cohort change by applying its audited `before` (`revertible: 'cohort_enforcement'`). */
  readonly revertHandler: RevertHandler;
}

interface Stored {
  readonly view: CohortsView;
  readonly etag: string | undefined;
}

const NONE: Stored = { view: { rules: [], updatedAt: null, updatedBy: null }, etag: undefined };

function parseStored(row: StoredEntity): Stored {
  const props = parseRow(cohortsRowSchema, row);
  let json: unknown;
  try {
    json = JSON.parse(props.rules);
  } catch (error) {
    throw new CorruptRowError(row.partitionKey, row.rowKey, `rules is not JSON (${String(error)})`);
  }
  const rules = cohortRulesSchema.safeParse(json);
  if (!rules.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(rules.error));
  return {
    view: { rules: rules.data, updatedAt: props.updatedAt, updatedBy: props.updatedBy },
    etag: row.etag,
  };
}

const sameRules = (a: readonly CohortRule[], b: readonly CohortRule[]) =>
  JSON.stringify(a) === JSON.stringify(b);

export function createCohortSettings(deps: {
  /** The billing table (its `ops|global` partition). */
  readonly table: EntityTable;
  /** `ENFORCEMENT_DEFAULT` and `ENFORCEMENT_OVERRIDES`. */
  readonly base: EnforcementPolicy;
  readonly clock: Clock;
  /** How long a process keeps the rules. @default 30000 */
  readonly ttlMs?: number;
}): CohortSettings {
  const { table, base, clock } = deps;
  const ttlMs = deps.ttlMs ?? 30_000;
  // Wall time (monotonic), not the business clock: the cache ages with the process, whatever tests do to time.
  let cached: { readonly policy: EnforcementPolicy; readonly until: number } | undefined;
  let loading: Promise<EnforcementPolicy> | undefined;

  const load = async (): Promise<Stored> => {
    const row = await table.get(GLOBAL_AUDIT_PARTITION, COHORTS_ROW);
    return row ? parseStored(row) : NONE;
  };
  const remember = (view: CohortsView): EnforcementPolicy => {
    const policy = { ...base, cohorts: view.rules };
    cached = { policy, until: performance.now() + ttlMs };
    return policy;
  };

  async function set(rules: readonly CohortRule[], change: AdminChange) {
    const result = await commit(
      table,
      GLOBAL_AUDIT_PARTITION,
      async () => {
        const before = await load();
        if (sameRules(before.view.rules, rules)) return answer({ ...before.view, changed: false });
        const at = clock.now().toISOString();
        const view: CohortsView = { rules, updatedAt: at, updatedBy: change.actor };
        const props = { rules: JSON.stringify(rules), updatedAt: at, updatedBy: change.actor };
        const actions: TransactionAction[] = [
          before.etag === undefined
            ? { kind: 'create', rowKey: COHORTS_ROW, props }
            : { kind: 'update', rowKey: COHORTS_ROW, props, etag: before.etag },
          auditAction(
            {
              ...adminAudit(change, at),
              kind: 'cohort_enforcement_set',
              before: before.etag === undefined ? null : { rules: before.view.rules },
              after: { rules },
              revertible: 'cohort_enforcement',
            },
            change.requestId,
          ),
        ];
        return write(actions, () => ({ ...view, changed: true }));
      },
      { what: 'setting the enforcement cohorts' },
    );
    remember(result);
    return result;
  }

  return {
    async current() {
      if (cached && performance.now() < cached.until) return cached.policy;
      loading ??= load()
        .then((stored) => remember(stored.view))
        .finally(() => {
          loading = undefined;
        });
      return loading;
    },
    async read() {
      const stored = await load();
      remember(stored.view);
      return stored.view;
    },
    set,
    revertHandler: {
      kind: 'cohort_enforcement',
      async revert({ before, actor, reason, revertOf, requestId }) {
        // `null`: there were no rules before the change.
        const parsed = z.object({ rules: cohortRulesSchema }).nullable().safeParse(before);
        if (!parsed.success)
          throw new UnrevertibleBeforeError(
            'cohort enforcement',
            z.prettifyError(parsed.error),
            parsed.error,
          );
        await set(parsed.data?.rules ?? [], { actor, reason, revertOf, requestId });
      },
    },
  };
}
