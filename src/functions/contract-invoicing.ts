import { randomUUID } from 'node:crypto';
import type { InvocationContext, Timer } from '@azure/functions';
import { type Services, servicesFromEnvironment } from '../composition.js';
import { contractInvoicingScheduleFromEnv } from '../config.js';
import { app } from '../http/functions-runtime.js';
import { traced } from '../telemetry/invocation.js';

/**
 * Hourly by default (`BILLING_CONTRACT_INVOICING_SCHEDULE`): issues the Stripe invoice of every enterprise
 * contract period that has begun and has none recorded (the first period's too, when the call after an
 * activation's commit never happened), and re-reads open contract invoices so a lost event cannot leave a
 * payment state behind. Idempotent: a second run in the same period issues nothing.
 */
export async function invoiceContracts(services: Services, context: InvocationContext): Promise<void> {
  const report = await services.contractInvoicing.sweep(`contract-invoicing-${randomUUID()}`);
  const line = `contract invoicing: ${report.owners} owners, ${report.issued} invoices issued, ${report.refreshed} refreshed, ${report.dropped} index rows dropped, ${report.failures.length} failures`;
  if (report.failures.length > 0) context.warn(line, report.failures);
  else context.log(line);
}

app.timer('contractInvoicing', {
  // Read when the host indexes the app; a malformed value stops start-up (as loadConfig would).
  schedule: contractInvoicingScheduleFromEnv(),
  handler: traced('timer', (_timer: Timer, context: InvocationContext) =>
    invoiceContracts(servicesFromEnvironment(), context),
  ),
});
