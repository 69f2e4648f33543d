import type { InvocationContext, Timer } from '@azure/functions';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { feedSweepScheduleFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';

/**
 * Every five minutes by default (`ENTITLEMENT_FEED_SWEEP_SCHEDULE`): drains the owners listed in
 * `feed|pending` whose drain never ran or failed (a crash between a change's commit and its enqueue, a
 * queue outage). Reads one partition, at most 200 listings a run; the next run continues.
 */
export async function sweepEntitlementFeed(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.feed.drain.sweep();
  const line = `entitlement feed sweep: ${report.owners} owners drained, ${report.published} events published, ${report.failures.length} failed${report.more ? '; more next run' : ''}`;
  if (report.failures.length > 0) context.warn(line, report.failures);
  else context.log(line);
}

app.timer('entitlementFeedSweep', {
  schedule: feedSweepScheduleFromEnv(),
  handler: (_timer: Timer, context: InvocationContext) =>
    sweepEntitlementFeed(servicesFromEnvironment(), context),
});
