import type { InvocationContext, Timer } from '@azure/functions';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { app } from '../http/functions-runtime.js';
import { traced } from '../telemetry/invocation.js';

/** Hourly: keeps the Table Storage price cache fresh, so `/api/plans` rarely waits on Stripe. */
export async function refreshPricing(services: Services, context: InvocationContext): Promise<void> {
  const snapshot = await services.pricing.refresh();
  context.log(`pricing refreshed: ${snapshot.prices.size} prices`);
}

export const PRICING_REFRESH_SCHEDULE = '0 5 * * * *';

app.timer('pricingRefresh', {
  schedule: PRICING_REFRESH_SCHEDULE,
  runOnStartup: false,
  handler: traced('timer', (_timer: Timer, context: InvocationContext) =>
    refreshPricing(servicesFromEnvironment(), context),
  ),
});
