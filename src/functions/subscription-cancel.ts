import { requireBillingOwner } from '../http/billing-owner.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** Cancels at period end: access stays until then. Drops a pending downgrade. */
export const subscriptionCancel = defineRoute({
  name: 'subscriptionCancel',
  methods: ['POST'],
  route: 'billing/subscription/cancel',
  access: 'user',
  async handle({ invocation, services, principal }) {
    const { ownerId, workspace } = await requireBillingOwner(principal, services.directory);
    await services.actions.cancel(ownerId, principal.userId, invocation.invocationId);
    return json(200, await services.summaries.forWorkspace(ownerId, workspace, ownerId));
  },
});

registerHttp(subscriptionCancel);
