import type { InvocationContext, Timer } from '@azure/functions';
import type { SeatSweepReport } from '../billing/seat-sync.js';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { seatSyncScheduleFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';

/** One line an operator can read: what the sweep found and repaired. */
export function describeSweep(report: SeatSweepReport): string {
  const counts = Object.entries(report.outcomes)
    .filter(([, n]) => n > 0)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  return `seat sync: ${report.examined} per-seat owners (${counts || 'none'}); ${report.repaired.length} repaired; ${report.failures.length} failures`;
}

/**
 * Hourly by default (`BILLING_SEAT_SYNC_SCHEDULE`): compares every per-seat subscription's Stripe
 * quantity with the one computed from membership and repairs drift through the same sync the queue runs,
 * audited (cause `seat_sync`). Catches a sync request lost between a membership commit and the queue.
 */
export async function syncSeats(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.seatSync.sweep({ trigger: 'timer' });
  const line = describeSweep(report);
  if (report.failures.length > 0) context.warn(line, report.failures);
  else context.log(line);
}

app.timer('seatSync', {
  // Read when the host indexes the app; a malformed value stops start-up (as loadConfig would).
  schedule: seatSyncScheduleFromEnv(),
  handler: (_timer: Timer, context: InvocationContext) => syncSeats(servicesFromEnvironment(), context),
});
