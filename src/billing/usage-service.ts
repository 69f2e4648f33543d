import { type MeterName, meterAllowance } from './catalog.js';
import { type EnforcementMode, type EnforcementPolicy, modeFor } from './enforcement.js';
import type { Entitlements, Subject } from './entitlements.js';
import { BillingError, conflict, notFound } from './errors.js';
import type { Locks } from './locks.js';
import type { ConsumeOutcome, Metering, RefundOutcome } from './metering.js';
import { consumeMarkerKey } from './metering-rows.js';
import type { EntityTable } from './store.js';

/**
 * The execution runtime's entry points: consume and refund, for a subject resolved to its billing owner
 * exactly like an entitlement check, with the allowance and window of the owner's effective plan.
 */
export interface UsageService {
  consume(input: {
    subject: Subject;
    meter: MeterName;
    quantity: number;
    idempotencyKey: string;
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
  readonly entitlements: Entitlements;
  readonly metering: Metering;
  readonly locks: Pick<Locks, 'isWorkflowLocked'>;
  readonly enforcement: EnforcementPolicy;
  /** To tell a replay (answered before, whatever is locked now) from a new consumption. */
  readonly billingTable: EntityTable;
}): UsageService {
  const { entitlements, metering, locks, enforcement, billingTable } = deps;
  return {
    async consume({ subject, meter, quantity, idempotencyKey }) {
      const resolved = await entitlements.resolveSubject(subject);
      const caps = await entitlements.capabilities(resolved.ownerId);
      const configured = modeFor(enforcement, meter);
      // During a payment grace period limits are soft: allowed, and the would-be denial recorded.
      const mode: EnforcementMode =
        configured === 'enforce' && caps.accessLevel === 'grace' ? 'monitor' : configured;
      // A key answered before keeps its answer, even if the workflow has been locked since.
      const answeredBefore = async () =>
        (await billingTable.get(caps.ownerId, consumeMarkerKey(idempotencyKey))) !== undefined;
      if (mode === 'enforce' && resolved.workflow && !(await answeredBefore())) {
        if (await locks.isWorkflowLocked(caps.ownerId, resolved.workflow, caps.limits)) {
          throw new BillingError(
            'payment_required',
            'resource_locked',
            `Workflow ${resolved.workflow.workflowId} is over the plan's workflow limits and locked; upgrade, delete workflows, or choose which to keep.`,
          );
        }
      }
      const outcome = await metering.consume({
        ownerId: caps.ownerId,
        meter,
        quantity,
        idempotencyKey,
        allowance: meterAllowance(caps.limits, meter),
        period: caps.period,
        mode,
      });
      if (outcome.kind === 'consumed') return { kind: 'consumed', outcome };
      const planAllowance = meterAllowance(caps.planLimits, meter);
      const paymentWouldFix =
        caps.accessLevel === 'locked' &&
        (planAllowance === null || outcome.used + quantity <= planAllowance + outcome.creditBalance);
      return { kind: 'denied', code: paymentWouldFix ? 'payment_required' : 'limit_exceeded', outcome };
    },

    async refund({ subject, idempotencyKey }) {
      const { ownerId } = await entitlements.resolveSubject(subject);
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
