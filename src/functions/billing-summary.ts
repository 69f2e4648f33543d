import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { tenantOf } from '../http/tenant.js';

/** The billing page for the token's workspace: owner, plan, status, limits, usage, flags. */
export const billingSummary = defineRoute({
  name: 'billingSummary',
  methods: ['GET'],
  route: 'billing/summary',
  access: 'user',
  async handle({ services, principal }) {
    const { ownerId, workspace } = await tenantOf(principal, services.directory);
    return json(200, await services.summaries.forWorkspace(ownerId, workspace, principal.userId));
  },
});

registerHttp(billingSummary);
