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
  context.log(
    `entitlement feed sweep: ${report.owners} owners drained, ${report.published} events published${report.more ? '; more next run' : ''}`,
  );
}

app.timer('entitlementFeedSweep', {
  schedule: feedSweepScheduleFromEnv(),
  handler: (_timer: Timer, context: InvocationContext) =>
    sweepEntitlementFeed(servicesFromEnvironment(), context),
});
