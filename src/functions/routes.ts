import type { Route } from '../http/route.js';
import { billingAudit } from './billing-audit.js';
import { billingCheckout } from './billing-checkout.js';
import { billingCredits, creditsCheckout } from './billing-credits.js';
import { billingInvoices } from './billing-invoices.js';
import { billingLocks } from './billing-locks.js';
import { billingPortal } from './billing-portal.js';
import { billingSeats } from './billing-seats.js';
import { billingSummary } from './billing-summary.js';
import { billingUsage } from './billing-usage.js';
import { directoryCredential } from './directory-credentials.js';
import { directoryMember } from './directory-members.js';
import { directoryOrg } from './directory-orgs.js';
import { directoryWorkflow } from './directory-workflows.js';
import { entitlementsChanges } from './entitlements-changes.js';
import { entitlementsCheck } from './entitlements-check.js';
import { health } from './health.js';
import { opsAuditList, opsAuditRevert } from './ops-audit.js';
import { opsContractDelete, opsContractGet, opsContractPut } from './ops-contracts.js';
import { opsEnforcementCohorts, opsMonitor } from './ops-enforcement.js';
import {
  opsEntitlementDeliveriesFailed,
  opsEntitlementDeliveriesReplay,
} from './ops-entitlement-deliveries.js';
import { opsPoisonList, opsPoisonReplay } from './ops-events.js';
import { opsOwnerEnforcement, opsOwnerOverrides } from './ops-owners.js';
import { opsReconcile } from './ops-reconcile.js';
import { opsSeatSync } from './ops-seats.js';
import { plans } from './plans.js';
import { subscriptionCancel } from './subscription-cancel.js';
import { subscriptionChange } from './subscription-change.js';
import { subscriptionPreview } from './subscription-preview.js';
import { subscriptionResume } from './subscription-resume.js';
import { usageConsume } from './usage-consume.js';
import { usageRefund } from './usage-refund.js';
import { stripeWebhook } from './webhooks-stripe.js';

/** Every HTTP route, for the local host. The Functions host finds them through `main` instead. */
export const routes: readonly Route[] = [
  health,
  plans,
  billingSummary,
  entitlementsCheck,
  entitlementsChanges,
  directoryOrg,
  directoryMember,
  directoryWorkflow,
  directoryCredential,
  billingCheckout,
  billingPortal,
  subscriptionChange,
  subscriptionPreview,
  subscriptionCancel,
  subscriptionResume,
  billingInvoices,
  stripeWebhook,
  usageConsume,
  usageRefund,
  billingUsage,
  billingCredits,
  creditsCheckout,
  billingLocks,
  billingSeats,
  opsReconcile,
  opsSeatSync,
  opsPoisonList,
  opsPoisonReplay,
  opsOwnerOverrides,
  opsOwnerEnforcement,
  opsEnforcementCohorts,
  opsMonitor,
  opsContractPut,
  opsContractGet,
  opsContractDelete,
  opsEntitlementDeliveriesFailed,
  opsEntitlementDeliveriesReplay,
  billingAudit,
  opsAuditList,
  opsAuditRevert,
];
