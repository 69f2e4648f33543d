import { observeDecision } from '../telemetry/observe.js';
import type { Capabilities } from './access/capabilities.js';
import { capabilitiesFor, type Decision, decideCheck, type ResolvedSubject } from './access/decide.js';
import {
  type Explanation,
  explainCheck,
  type LimitSource,
  limitSource,
  type MappingSource,
} from './access/explain.js';
import { wouldDenyAction } from './access/would-deny.js';
import type { Catalog, FeatureName } from './catalog.js';
import type { Clock } from './clock.js';
import type { Directory } from './directory/index.js';
import type { EnforcementSource } from './enforcement.js';
import { notFound, validationError } from './errors.js';
import type { OrgId, OwnerId, UserId, WorkflowId } from './ids.js';
import { LruMap } from './lru.js';
import type { OwnerAccess } from './owner/owner-access.js';
import { liveOrg, type OwnerSnapshot } from './owner/snapshot.js';
import { reaches, requireVersion, type Versioned, versionOf } from './owner/versioned.js';
import type { EntityTable } from './store.js';

export type { Capabilities } from './access/capabilities.js';
export {
  ALLOW_REASONS,
  DENY_REASONS,
  type Decision,
  type DecisionReason,
  type ResolvedSubject,
} from './access/decide.js';

/** Who is asking on behalf of what. The most specific id wins: workflow, then organization, then user. */
export interface Subject {
  readonly userId?: UserId | undefined;
  readonly orgId?: OrgId | undefined;
  readonly workflowId?: WorkflowId | undefined;
}

export interface CheckRequest {
  readonly subject: Subject;
  readonly feature: FeatureName;
  readonly quantity?: number | undefined;
  /** The answer must be computed from at least this version of the owner's snapshot. */
  readonly minVersion?: number | undefined;
  /** Add the decision trace (`access/explain.ts`); without it nothing of the trace is computed. */
  readonly explain?: boolean | undefined;
}

/**
 * A decision, with the snapshot version it was computed from, where the feature's value in force comes
 * from (`source`: the plan, the free plan while payment is locked, or a per-owner override), and its
 * trace when asked for.
 */
export type CheckAnswer = Decision &
  Versioned & { readonly source: LimitSource; readonly explain?: Explanation };

/**
 * Entitlement checks: a subject resolved to its billing owner through the directory (one point read
 * for a workflow; none for a user, or for an organization whose creator is remembered), the owner's
 * snapshot (one range query), and the one decision path (`access/decide.ts`).
 */
export interface Entitlements {
  /** The subject's owner and the owner's snapshot, which confirms the subject still belongs to it. */
  resolve(subject: Subject, minVersion?: number): Promise<Resolution>;
  capabilities(ownerId: OwnerId): Promise<Capabilities>;
  /** @throws BillingError `version_not_reached` when even a fresh read is older than `minVersion`. */
  check(request: CheckRequest): Promise<CheckAnswer>;
}

export interface Resolution {
  readonly resolved: ResolvedSubject;
  readonly snapshot: OwnerSnapshot;
  readonly mapping: MappingSource;
}

export interface EntitlementDeps {
  readonly catalog: Catalog;
  readonly directory: Directory;
  readonly owners: OwnerAccess;
  /** Configuration and cohort rules, read before each decision (cached briefly by the source). */
  readonly enforcement: EnforcementSource;
  /** The owner-partitioned `billing` table, where would-be denials are recorded. */
  readonly billingTable: EntityTable;
  readonly clock: Clock;
}

export function createEntitlements(deps: EntitlementDeps): Entitlements {
  const { catalog, directory, owners, enforcement: policies, billingTable, clock } = deps;
  /**
   * Where each workflow was last seen: its owner's snapshot is read beside its index row rather than
   * after it (one round trip of latency instead of two). Only a guess: the index row read with it says
   * where the workflow is, and a wrong guess costs one more read.
   */
  const lastOwner = new LruMap<WorkflowId, OwnerId>(100_000);

  /**
   * `minVersion` matters only where a cached mapping was used: a snapshot older than it may belong to an
   * owner the organization no longer has, so the mapping is looked up afresh before giving up.
   */
  async function resolve(subject: Subject, minVersion?: number): Promise<Resolution> {
    if (subject.workflowId !== undefined) {
      const workflowId = subject.workflowId;
      const guess = lastOwner.get(workflowId);
      const [workflow, guessed] = await Promise.all([
        directory.getWorkflow(workflowId),
        guess === undefined ? undefined : owners.read(guess),
      ]);
      const missing = () => notFound('workflow_not_found', `Workflow ${workflowId} is not in the directory.`);
      if (!workflow) {
        lastOwner.delete(workflowId);
        throw missing();
      }
      lastOwner.set(workflowId, workflow.ownerId);
      const ws = workflow.workspace;
      if (subject.orgId !== undefined && (ws.kind !== 'org' || ws.orgId !== subject.orgId)) {
        throw validationError(
          'subject_inconsistent',
          `Workflow ${subject.workflowId} does not belong to organization ${subject.orgId}.`,
        );
      }
      const snapshot = guessed && guess === workflow.ownerId ? guessed : await owners.read(workflow.ownerId);
      // Its organization was deleted (with it) after the index was read.
      if (ws.kind === 'org' && !liveOrg(snapshot, ws.orgId)) throw missing();
      return {
        resolved: {
          ownerId: workflow.ownerId,
          workspace: ws,
          workflow: { workflowId: workflow.workflowId, workspace: ws, nodeCount: workflow.nodeCount },
        },
        snapshot,
        mapping: 'read',
      };
    }
    if (subject.orgId !== undefined) {
      const orgId = subject.orgId;
      const missing = () => notFound('org_not_found', `Organization ${orgId} is not in the directory.`);
      for (const fresh of [false, true]) {
        const found = await directory.orgOwner(orgId, { fresh });
        if (found === undefined) throw missing();
        const { ownerId, cached } = found;
        const snapshot = await owners.read(ownerId);
        if (liveOrg(snapshot, orgId) && (!cached || reaches(snapshot, minVersion)))
          return {
            resolved: { ownerId, workspace: { kind: 'org', orgId } },
            snapshot,
            mapping: cached ? 'cached' : 'read',
          };
      }
      throw missing();
    }
    if (subject.userId !== undefined) {
      const userId = subject.userId;
      return {
        resolved: { ownerId: userId, workspace: { kind: 'personal', userId } },
        snapshot: await owners.read(userId),
        mapping: 'none',
      };
    }
    throw validationError('subject_required', 'subject needs one of userId, orgId or workflowId.');
  }

  return {
    resolve,

    async capabilities(ownerId) {
      return capabilitiesFor(await owners.read(ownerId), catalog);
    },

    async check(request) {
      const [{ resolved, snapshot, mapping }, enforcement] = await Promise.all([
        resolve(request.subject, request.minVersion),
        policies.current(),
      ]);
      requireVersion(snapshot, request.minVersion);
      const { decision, wouldDeny } = decideCheck({
        snapshot,
        catalog,
        enforcement,
        resolved,
        feature: request.feature,
        quantity: request.quantity,
      });
      observeDecision(decision, wouldDeny !== undefined);
      if (wouldDeny) {
        const at = clock.now().toISOString();
        await billingTable.transact(decision.owner, [
          wouldDenyAction(wouldDeny, { subject: request.subject, at }),
        ]);
      }
      const source = limitSource(capabilitiesFor(snapshot, catalog), request.feature);
      if (!request.explain) return { ...decision, source, ...versionOf(snapshot) };
      const explain = explainCheck({
        snapshot,
        catalog,
        enforcement,
        subject: request.subject,
        resolved,
        mapping,
        feature: request.feature,
        quantity: request.quantity,
        decision,
      });
      return { ...decision, source, ...versionOf(snapshot), explain };
    },
  };
}
