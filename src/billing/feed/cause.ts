import { AsyncLocalStorage } from 'node:async_hooks';
import { z } from 'zod';

/**
 * Why an owner's entitlements changed, carried to the outbox row without threading it through every
 * writer: the invocation that runs the change sets it (`telemetry/invocation.ts` for every HTTP request,
 * queue message and timer run; the processor narrows it to the Stripe event), and the billing table's
 * outbox reads it when the change commits. Node's `AsyncLocalStorage` follows the invocation's awaits
 * only, so two concurrent invocations never see each other's cause.
 */
export const CAUSE_KINDS = ['request', 'stripe_event', 'queue', 'timer', 'unknown'] as const;

export const changeCauseSchema = z.object({
  kind: z.enum(CAUSE_KINDS),
  /** The invocation id, the Stripe event id, the timer run. */
  id: z.string(),
  /** The function (route or timer) that made the change, when known. */
  source: z.string().optional(),
});
export type ChangeCause = z.infer<typeof changeCauseSchema>;

const UNKNOWN: ChangeCause = { kind: 'unknown', id: 'unknown' };

const storage = new AsyncLocalStorage<ChangeCause>();

/** Runs `fn` with `cause` as the cause of every change it commits. */
export function withCause<R>(cause: ChangeCause, fn: () => R): R {
  return storage.run(cause, fn);
}

/** The cause of the change being written, `unknown` outside any invocation (a script, a test). */
export const currentCause = (): ChangeCause => storage.getStore() ?? UNKNOWN;
