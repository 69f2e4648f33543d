import { annotate } from './attributes.js';
import { recordEventLag, recordRedelivery } from './metrics.js';
import { ATTR } from './names.js';

/** What the processor knows about the queued Stripe event it is applying (`EventRef` fits). */
export interface ObservedEvent {
  readonly eventId: string;
  readonly type: string;
  /** Failed deliveries before this one (`EventRef.attempt`); above 0 this delivery is a redelivery. */
  readonly attempt: number;
  /** Stripe's `event.created`, in Unix seconds as Stripe sends it; without it no lag is recorded. */
  readonly created?: number | undefined;
}

/** Outcomes that say the event changed nothing now, so its lag would measure something else. */
const NOT_APPLIED: ReadonlySet<string> = new Set(['duplicate', 'ignored']);

/**
 * Applies one queued Stripe event under observation: the event's id, type and attempt go on the
 * invocation's span, a redelivery is counted, and once applied the outcome (and its owner, when it names
 * one) is added and the webhook-to-applied lag recorded. `apply`'s result and errors pass through as they
 * are. `now` is the clock the lag is measured on (milliseconds).
 */
export async function observeEvent<O extends { readonly kind: string }>(
  event: ObservedEvent,
  apply: () => Promise<O>,
  now: () => number = Date.now,
): Promise<O> {
  annotate({ [ATTR.eventId]: event.eventId, [ATTR.eventType]: event.type, [ATTR.attempt]: event.attempt });
  if (event.attempt > 0) recordRedelivery(event);
  const outcome = await apply();
  annotate({ [ATTR.eventOutcome]: outcome.kind });
  if ('ownerId' in outcome && typeof outcome.ownerId === 'string')
    annotate({ [ATTR.owner]: outcome.ownerId });
  if (event.created !== undefined && !NOT_APPLIED.has(outcome.kind)) {
    recordEventLag(now() - event.created * 1000, { type: event.type, outcome: outcome.kind });
  }
  return outcome;
}
