import { type Attributes, trace } from '@opentelemetry/api';
import { ATTR } from './names.js';

/**
 * What the domain knows that an invocation's span should carry: the billing owner, the feature and the
 * decision. The domain calls these one-liners instead of the OpenTelemetry API, so it stays free of
 * telemetry types; with no SDK started there is no active span and each call is a no-op.
 */

export function annotate(attributes: Attributes): void {
  trace.getActiveSpan()?.setAttributes(attributes);
}

export function annotateOwner(ownerId: string): void {
  annotate({ [ATTR.owner]: ownerId });
}

export interface DecisionAttributes {
  readonly owner: string;
  readonly feature: string;
  readonly reason: string;
  readonly allowed: boolean;
  readonly enforcement?: string;
}

export function annotateDecision(decision: DecisionAttributes): void {
  annotate({
    [ATTR.owner]: decision.owner,
    [ATTR.feature]: decision.feature,
    [ATTR.reason]: decision.reason,
    [ATTR.allowed]: decision.allowed,
    ...(decision.enforcement === undefined ? {} : { [ATTR.enforcement]: decision.enforcement }),
  });
}
