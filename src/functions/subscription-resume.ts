import { requireBillingOwner } from '../http/billing-owner.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** Undoes a cancellation before the period ends. */
export const subscriptionResume = defineRoute({
  name: 'subscriptionResume',
  methods: ['POST'],
  route: 'billing/subscription/resume',
  access: 'user',
  async handle({ invocation, services, principal }) {
    const { ownerId, workspace } = await requireBillingOwner(principal, services.directory);
    await services.actions.resume(ownerId, principal.userId, invocation.invocationId);
    return json(200, await services.summaries.forWorkspace(ownerId, workspace, ownerId));
  },
});

registerHttp(subscriptionResume);
