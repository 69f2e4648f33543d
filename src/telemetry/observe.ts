import { annotate, annotateDecision } from './attributes.js';
import { recordConsumeDuration, recordDecision, recordWouldDeny } from './metrics.js';
import { ATTR } from './names.js';

/**
 * One call per domain outcome: it annotates the invocation's span and records the metrics. The shapes
 * are structural so this module needs nothing from the domain (the domain's own types fit them).
 */

export interface ObservedDecision {
  readonly owner: string;
  readonly feature: string;
  readonly reason: string;
  readonly allowed: boolean;
  readonly enforcement: string;
}

/** An entitlement check's decision; `wouldDeny` when monitor or a grace period let a denial through. */
export function observeDecision(decision: ObservedDecision, wouldDeny: boolean): void {
  annotateDecision(decision);
  annotate({ [ATTR.source]: 'check', [ATTR.wouldDeny]: wouldDeny });
  recordDecision({ ...decision, source: 'check' });
  if (wouldDeny) recordWouldDeny({ ...decision, source: 'check' });
}

/** The fields of a consumption's answer that telemetry reads (`ConsumeOutcome` fits). */
export type ObservedConsume = {
  readonly ownerId: string;
  readonly meter: string;
  readonly mode: string;
  readonly replayed: boolean;
  readonly allowance: number | null;
} & (
  | { readonly kind: 'consumed'; readonly wouldDeny: boolean }
  | { readonly kind: 'denied'; readonly reason: string }
);

/**
 * A consumption's answer and how long it took. A replay is the earlier answer again, so it is timed but
 * not counted as another decision. The reason is the one a check would give: what `enforce` would say.
 */
export function observeConsume(outcome: ObservedConsume, ms: number): void {
  const reason =
    outcome.kind === 'denied'
      ? outcome.reason
      : outcome.wouldDeny
        ? 'limit_exceeded'
        : outcome.mode === 'off'
          ? 'enforcement_off'
          : outcome.allowance === null
            ? 'unlimited'
            : 'within_limit';
  const decision = {
    owner: outcome.ownerId,
    feature: outcome.meter,
    reason,
    allowed: outcome.kind === 'consumed',
    enforcement: outcome.mode,
  };
  const wouldDeny = outcome.kind === 'consumed' && outcome.wouldDeny;
  annotateDecision(decision);
  annotate({
    [ATTR.source]: 'consume',
    [ATTR.meter]: outcome.meter,
    [ATTR.replayed]: outcome.replayed,
    [ATTR.wouldDeny]: wouldDeny,
  });
  recordConsumeDuration(ms, { meter: outcome.meter, outcome: outcome.kind, replayed: outcome.replayed });
  if (outcome.replayed) return;
  recordDecision({ ...decision, source: 'consume' });
  if (wouldDeny) recordWouldDeny({ ...decision, source: 'consume' });
}

/** A consumption that failed (bad request, contention, outage): timed, so slow failures show. */
export function observeConsumeFailure(meter: string, ms: number): void {
  recordConsumeDuration(ms, { meter, outcome: 'error', replayed: false });
}
