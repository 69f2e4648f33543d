import { requireBillingOwner } from '../http/billing-owner.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** The owner's invoices, newest first, as recorded from Stripe's invoice events. */
export const billingInvoices = defineRoute({
  name: 'billingInvoices',
  methods: ['GET'],
  route: 'billing/invoices',
  access: 'user',
  async handle({ services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    return json(200, { invoices: await services.actions.invoices(ownerId) });
  },
});

registerHttp(billingInvoices);
