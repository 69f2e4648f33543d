import { z } from 'zod';
import { BillingError } from './errors.js';
import { EventShapeError } from './event-ref.js';
import { UnknownCustomerError, UnmappedPriceError } from './lifecycle.js';
import { CorruptRowError } from './owner/rows.js';
import { PaymentsError } from './payments.js';
import { QueueUnavailableError } from './queue.js';
import { StoreError, StoreRejectedError } from './store.js';

/**
 * Whether an event that failed to apply is worth another delivery. Decided by error class and code only,
 * never by message text (messages are for people and change without notice).
 *
 * - transient: the same event may apply later unchanged (Stripe or storage was down, throttled or
 *   contended). Redelivered with growing delays.
 * - permanent: no redelivery can help until someone changes something (an unknown customer, a price no
 *   plan maps, a malformed event, a corrupt row, a request Stripe or storage refuses). Poisoned at once.
 */
export type FailureClass = 'transient' | 'permanent';

export interface Failure {
  readonly kind: FailureClass;
  /** Stable, machine-readable: logged and recorded on the poison row. */
  readonly code: string;
}

/** How deep `cause` chains are followed for a wrapper we do not know. */
const MAX_CAUSE_DEPTH = 5;

export function classifyFailure(error: unknown): FailureClass {
  return describeFailure(error).kind;
}

export function describeFailure(error: unknown, depth = 0): Failure {
  if (error instanceof PaymentsError) {
    // 429, 5xx and network failures are transient; not found, invalid request, authentication and a
    // declined card say something about the request or the account, which time does not change.
    return { kind: error.transient ? 'transient' : 'permanent', code: `payments_${error.code}` };
  }
  // Before StoreError: it is a subclass (code store_rejected) and the service refused the request itself.
  if (error instanceof StoreRejectedError) return { kind: 'permanent', code: error.code };
  // store_unavailable and store_contended, and the conflicts the commit helper would normally absorb
  // (a lost race): each may go the other way on the next delivery.
  if (error instanceof StoreError) return { kind: 'transient', code: error.code };
  // A redelivery or replay that could not be queued: the queue may take it next time.
  if (error instanceof QueueUnavailableError) return { kind: 'transient', code: error.code };
  if (error instanceof BillingError) {
    // Only `unavailable` is ours-and-temporary; every other kind describes the event or the account.
    return { kind: error.kind === 'unavailable' ? 'transient' : 'permanent', code: error.code };
  }
  if (error instanceof EventShapeError) return { kind: 'permanent', code: error.code };
  if (error instanceof UnknownCustomerError) return { kind: 'permanent', code: 'unknown_customer' };
  if (error instanceof UnmappedPriceError) return { kind: 'permanent', code: 'unmapped_price' };
  if (error instanceof CorruptRowError) return { kind: 'permanent', code: error.code };
  if (error instanceof z.core.$ZodError) return { kind: 'permanent', code: 'invalid_data' };
  // A wrapper we do not know may carry a cause we do.
  if (error instanceof Error && error.cause !== undefined && depth < MAX_CAUSE_DEPTH) {
    const inner = describeFailure(error.cause, depth + 1);
    if (inner.code !== 'unexpected') return inner;
  }
  // A bug or a failure we did not foresee: retried, but only up to the attempt limit, then poisoned.
  return { kind: 'transient', code: 'unexpected' };
}

export interface BackoffSettings {
  readonly baseSeconds: number;
  readonly maxSeconds: number;
}

/**
 * Seconds before redelivery number `attempt` (1 for the first): `base * 2^(attempt-1)`, capped at
 * `max`, jittered between three quarters and all of it so that the events of one outage do not all come
 * back in the same second when it ends, while the total a number of attempts buys stays predictable.
 */
export function redeliveryDelaySeconds(
  attempt: number,
  settings: BackoffSettings,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const ceiling = Math.min(settings.maxSeconds, settings.baseSeconds * 2 ** exponent);
  return Math.max(1, Math.round(ceiling * (0.75 + 0.25 * random())));
}

/**
 * The queue message id of redelivery number `attempt`. Not the event id: Service Bus duplicate detection
 * drops a message whose id it saw within its window, and the first delivery already used that.
 */
export const redeliveryMessageId = (eventId: string, attempt: number): string => `${eventId}~${attempt}`;

/** A transiently failed event could not be sent back to the queue; the host's own redelivery takes over. */
export class RedeliveryFailedError extends Error {
  readonly code = 'redelivery_failed';
  constructor(
    readonly eventId: string,
    options: { readonly cause?: unknown } = {},
  ) {
    super(
      `Event ${eventId} failed transiently and could not be re-sent to the queue; it is left to the host's redelivery.`,
      options,
    );
    this.name = 'RedeliveryFailedError';
  }
}
