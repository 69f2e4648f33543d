import { observeConsume, observeConsumeFailure } from '../telemetry/observe.js';
import { consumeTerms, type ResolvedSubject } from './access/decide.js';
import type { Catalog, MeterName } from './catalog.js';
import type { Directory } from './directory/index.js';
import type { EnforcementSource } from './enforcement.js';
import type { Subject } from './entitlements.js';
import { BillingError, conflict, notFound, validationError } from './errors.js';
import type { ConsumeOutcome, Metering, RefundOutcome } from './metering.js';
import { liveOrg, type OwnerSnapshot } from './owner/snapshot.js';
import { isVersionNotReached } from './owner/versioned.js';

/**
 * The execution runtime's entry points: consume and refund, for a subject resolved to its billing owner
 * like an entitlement check. The terms (allowance, window, enforcement, whether a workflow is locked)
 * are decided by the same decision path, from the owner snapshot the consumption's batch reads.
 */
export interface UsageService {
  consume(input: {
    subject: Subject;
    meter: MeterName;
    quantity: number;
    idempotencyKey: string;
    /** Decide from at least this snapshot version. @throws BillingError `version_not_reached` */
    minVersion?: number | undefined;
  }): Promise<ConsumeAnswer>;
  refund(input: {
    subject: Subject;
    idempotencyKey: string;
  }): Promise<Extract<RefundOutcome, { kind: 'refunded' | 'already_refunded' }>>;
}

export type ConsumeAnswer =
  | { readonly kind: 'consumed'; readonly outcome: ConsumeOutcome }
  /** Enforced denial: nothing consumed. `code` says whether paying the overdue invoice would fix it. */
  | {
      readonly kind: 'denied';
      readonly code: 'limit_exceeded' | 'payment_required';
      readonly outcome: ConsumeOutcome;
    };

export function createUsageService(deps: {
  readonly catalog: Catalog;
  readonly directory: Directory;
  readonly metering: Metering;
  readonly enforcement: EnforcementSource;
}): UsageService {
  const { catalog, directory, metering, enforcement } = deps;

  /** The subject's owner and workspace, without reading the owner (the consumption's batch does). */
  async function resolve(subject: Subject, fresh: boolean): Promise<ResolvedSubject> {
    if (subject.workflowId !== undefined) {
      const workflow = await directory.getWorkflow(subject.workflowId);
      if (!workflow)
        throw notFound('workflow_not_found', `Workflow ${subject.workflowId} is not in the directory.`);
      if (
        subject.orgId !== undefined &&
        (workflow.workspace.kind !== 'org' || workflow.workspace.orgId !== subject.orgId)
      ) {
        throw validationError(
          'subject_inconsistent',
          `Workflow ${subject.workflowId} does not belong to organization ${subject.orgId}.`,
        );
      }
      return {
        ownerId: workflow.ownerId,
        workspace: workflow.workspace,
        workflow: {
          workflowId: workflow.workflowId,
          workspace: workflow.workspace,
          nodeCount: workflow.nodeCount,
        },
      };
    }
    if (subject.orgId !== undefined) {
      const ownerId = await directory.ownerOfOrg(subject.orgId, { fresh });
      if (ownerId === undefined)
        throw notFound('org_not_found', `Organization ${subject.orgId} is not in the directory.`);
      return { ownerId, workspace: { kind: 'org', orgId: subject.orgId } };
    }
    if (subject.userId !== undefined)
      return { ownerId: subject.userId, workspace: { kind: 'personal', userId: subject.userId } };
    throw validationError('subject_required', 'subject needs one of userId, orgId or workflowId.');
  }

  /** The subject's organization must still be the owner's (it may have been deleted meanwhile). */
  function confirm(resolved: ResolvedSubject, snapshot: OwnerSnapshot) {
    if (resolved.workspace.kind === 'org' && !liveOrg(snapshot, resolved.workspace.orgId)) {
      throw resolved.workflow
        ? notFound('workflow_not_found', `Workflow ${resolved.workflow.workflowId} is not in the directory.`)
        : notFound('org_not_found', `Organization ${resolved.workspace.orgId} is not in the directory.`);
    }
  }

  async function consumeOnce(input: Parameters<UsageService['consume']>[0], fresh: boolean) {
    // The enforcement rules are cached per process; when they are not, they are read beside the subject.
    const [resolved, policy] = await Promise.all([resolve(input.subject, fresh), enforcement.current()]);
    return metering.consume({
      ownerId: resolved.ownerId,
      meter: input.meter,
      quantity: input.quantity,
      idempotencyKey: input.idempotencyKey,
      minVersion: input.minVersion,
      terms: (snapshot) => {
        confirm(resolved, snapshot);
        return consumeTerms(snapshot, catalog, policy, input.meter, resolved.workflow);
      },
    });
  }

  async function consumeRetryingOrg(input: Parameters<UsageService['consume']>[0]): Promise<ConsumeOutcome> {
    try {
      return await consumeOnce(input, false);
    } catch (error) {
      // An organization remembered with a creator it no longer has (its snapshot does not list it, or is
      // older than the caller has seen): look it up afresh, once.
      if (
        !(error instanceof BillingError) ||
        (error.code !== 'org_not_found' && !isVersionNotReached(error)) ||
        input.subject.orgId === undefined
      )
        throw error;
      return consumeOnce(input, true);
    }
  }

  return {
    async consume(input) {
      const started = performance.now();
      const outcome = await consumeRetryingOrg(input).catch((error: unknown) => {
        observeConsumeFailure(input.meter, performance.now() - started);
        throw error;
      });
      observeConsume(outcome, performance.now() - started);
      if (outcome.kind === 'consumed') return { kind: 'consumed', outcome };
      return { kind: 'denied', code: outcome.reason, outcome };
    },

    async refund({ subject, idempotencyKey }) {
      const { ownerId } = await resolve(subject, false);
      const outcome = await metering.refund({ ownerId, idempotencyKey });
      switch (outcome.kind) {
        case 'refunded':
        case 'already_refunded':
          return outcome;
        case 'not_found':
          throw notFound(
            'consumption_not_found',
            `No consumption with idempotency key ${idempotencyKey} for this owner.`,
          );
        case 'not_consumed':
          throw conflict(
            'consumption_was_denied',
            `The consumption ${idempotencyKey} was denied; there is nothing to refund.`,
          );
      }
    },
  };
}
