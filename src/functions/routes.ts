import type { Route } from '../http/route.js';
import { billingSummary } from './billing-summary.js';
import { directoryCredential } from './directory-credentials.js';
import { directoryMember } from './directory-members.js';
import { directoryOrg } from './directory-orgs.js';
import { directoryWorkflow } from './directory-workflows.js';
import { entitlementsCheck } from './entitlements-check.js';
import { health } from './health.js';
import { plans } from './plans.js';

/** Every HTTP route, for the local host. The Functions host finds them through `main` instead. */
export const routes: readonly Route[] = [
  health,
  plans,
  billingSummary,
  entitlementsCheck,
  directoryOrg,
  directoryMember,
  directoryWorkflow,
  directoryCredential,
];
