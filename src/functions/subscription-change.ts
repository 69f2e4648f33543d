import { z } from 'zod';
import { INTERVALS, PLAN_NAMES } from '../billing/catalog.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const changeBody = z.strictObject({ plan: z.enum(PLAN_NAMES), interval: z.enum(INTERVALS) });

/** Upgrades take effect now (prorated, 200); downgrades are scheduled for the period end (202). */
export const subscriptionChange = defineRoute({
  name: 'subscriptionChange',
  methods: ['POST'],
  route: 'billing/subscription/change',
  access: 'user',
  async handle({ request, invocation, services, principal }) {
    const { ownerId, workspace } = await requireBillingOwner(principal, services.directory);
    const body = await readJson(request, changeBody, services.config.maxBodyBytes);
    const outcome = await services.actions.change({
      ownerId,
      ...body,
      actor: principal.userId,
      requestId: invocation.invocationId,
    });
    const summary = await services.summaries.forWorkspace(ownerId, workspace, ownerId);
    return json(outcome.kind === 'upgraded' ? 200 : 202, { ...outcome, summary });
  },
});

registerHttp(subscriptionChange);
