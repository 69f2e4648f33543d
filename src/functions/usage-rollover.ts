import type { InvocationContext, Timer } from '@azure/functions';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { app } from '../http/functions-runtime.js';
import { traced } from '../telemetry/invocation.js';

/**
 * Daily: closes ended usage periods into monthly records. Idempotent and resumable: a run that stops
 * (budget, crash) leaves its cursor, and the next run continues.
 */
export async function rollUsageOver(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.rollover.run({ runId: context.invocationId });
  context.log(
    `usage rollover: closed ${report.closed}, already closed ${report.alreadyClosed}, without usage ${report.withoutUsage}, complete ${report.complete}, ${report.elapsedMs} ms`,
  );
  if (report.invalid.length > 0)
    context.warn(`usage rollover: ${report.invalid.length} unreadable index rows`, report.invalid);
}

app.timer('usageRollover', {
  schedule: '0 15 0 * * *',
  handler: traced('timer', (_timer: Timer, context: InvocationContext) =>
    rollUsageOver(servicesFromEnvironment(), context),
  ),
});
