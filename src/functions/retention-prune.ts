import type { InvocationContext, Timer } from '@azure/functions';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { retentionScheduleFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';
import { traced } from '../telemetry/invocation.js';

/**
 * Daily by default (`BILLING_RETENTION_SCHEDULE`): prunes consume markers, grant markers and ledger rows
 * past their retention (`BILLING_RETENTION_DAYS`). Bounded (`BILLING_RETENTION_MAX_ROWS` rows read, four
 * minutes) and resumable: a run that stops leaves its place, and the next continues.
 */
export async function pruneRetention(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.retention.run({ maxRows: services.config.retention.maxRows });
  const { consume, grant, ledger, feed } = report.pruned;
  context.log(
    `retention prune: ${report.owners} owners, pruned ${consume} consume markers, ${grant} grant markers, ${ledger} ledger rows, ${feed} published entitlement changes; read ${report.rowsRead} rows; complete ${report.complete}; cursor ${report.cursor}; ${report.elapsedMs} ms`,
  );
  if (report.invalid.length > 0)
    context.warn(`retention prune: ${report.invalid.length} unreadable index rows`, report.invalid);
}

app.timer('retentionPrune', {
  // Read when the host indexes the app; a malformed value stops start-up (as loadConfig would).
  schedule: retentionScheduleFromEnv(),
  handler: traced('timer', (_timer: Timer, context: InvocationContext) =>
    pruneRetention(servicesFromEnvironment(), context),
  ),
});
