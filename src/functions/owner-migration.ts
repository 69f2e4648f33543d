import type { InvocationContext, Timer } from '@azure/functions';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { app } from '../http/functions-runtime.js';
import { traced } from '../telemetry/invocation.js';

/**
 * Brings every owner still in the first storage layout over to the snapshot layout, then records that
 * it is done, after which reads stop looking for the old layout. Owners are also brought over on their
 * first read, so the app answers correctly before this finishes. Resumable and idempotent; once done,
 * a run is one read.
 */
export async function migrateOwners(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.migration.run();
  if (report.owners > 0 || !report.complete)
    context.log(
      `owner migration: ${report.migrated} of ${report.owners} owners migrated, ${report.removed} old rows removed, complete ${report.complete}, ${report.elapsedMs} ms`,
    );
}

app.timer('ownerMigration', {
  schedule: '0 */10 * * * *',
  // At start too: a deployment that brings the new layout migrates without waiting for the schedule.
  runOnStartup: true,
  handler: traced('timer', (_timer: Timer, context: InvocationContext) =>
    migrateOwners(servicesFromEnvironment(), context),
  ),
});
