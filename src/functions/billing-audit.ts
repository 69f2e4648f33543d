import { parseAuditQuery, withCursorCheck } from '../http/audit-query.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/**
 * The billing owner's own audit trail, newest first: every change to their billing, who or what made it
 * and why. Only the billing owner: the trail names amounts and payment details of the whole account.
 */
export const billingAudit = defineRoute({
  name: 'billingAudit',
  methods: ['GET'],
  route: 'billing/audit',
  access: 'user',
  async handle({ request, services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    const { filter } = parseAuditQuery(request.query, { ownerParam: false });
    const page = await withCursorCheck(() => services.audit.listOwner(ownerId, filter));
    return json(200, page);
  },
});

registerHttp(billingAudit);
