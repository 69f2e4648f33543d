import { requireBillingOwner } from '../http/billing-owner.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** A Stripe billing portal session, for payment methods and invoices. */
export const billingPortal = defineRoute({
  name: 'billingPortal',
  methods: ['POST'],
  route: 'billing/portal',
  access: 'user',
  async handle({ services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    return json(201, await services.actions.portal(ownerId));
  },
});

registerHttp(billingPortal);
