import type { InvocationContext, Timer } from '@azure/functions';
import type { ReconcileReport } from '../billing/reconcile.js';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { reconcileScheduleFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';

/** One line an operator can read: what the run repaired, and where it stopped. */
export function describeRun(report: ReconcileReport): string {
  const { events, owners } = report.syncs;
  return [
    `stripe reconcile ${report.runId}: ${report.outcome}`,
    `events: ${events.examined} customers, ${events.applied} repaired, ${events.unknownCustomers} not ours`,
    `live owners: ${owners.examined}, ${owners.applied} repaired`,
    `credit sessions: ${report.credits.examined}, ${report.credits.granted} granted`,
    `${report.failures.length} failures`,
  ].join('; ');
}

/**
 * Every 15 minutes by default (`BILLING_RECONCILE_SCHEDULE`): repairs drift from Stripe through the
 * same apply path as events. Bounded and resumable: a run that stops leaves its place in the state row.
 */
export async function reconcileStripe(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.reconciler.run({ actor: 'timer' });
  if (report.outcome === 'busy') {
    context.log(`stripe reconcile: another run (${report.heldBy?.runId}) holds the state; skipped`);
    return;
  }
  const line = describeRun(report);
  if (report.failures.length > 0) context.warn(line, report.failures);
  else context.log(line);
}

app.timer('stripeReconcile', {
  // Read when the host indexes the app; a malformed value stops start-up (as loadConfig would).
  schedule: reconcileScheduleFromEnv(),
  handler: (_timer: Timer, context: InvocationContext) => reconcileStripe(servicesFromEnvironment(), context),
});
