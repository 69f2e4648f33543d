import { z } from 'zod';
import { INTERVALS, PLAN_NAMES } from '../billing/catalog.js';
import type { ChangeRequest } from '../billing/change-plan.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const previewBody = z.union([
  z.strictObject({ plan: z.enum(PLAN_NAMES), interval: z.enum(INTERVALS) }),
  z.strictObject({ cancel: z.literal(true) }),
]);

/**
 * What `POST /billing/subscription/change` (or `/cancel`) would do, from the same plan: limits and
 * flags before and after, what would lock, the seats billed, what is due now and when it takes effect.
 * Nothing is written and nothing changes in Stripe.
 */
export const subscriptionPreview = defineRoute({
  name: 'subscriptionPreview',
  methods: ['POST'],
  route: 'billing/subscription/preview',
  access: 'user',
  async handle({ request, services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    const body = await readJson(request, previewBody, services.config.maxBodyBytes);
    const change: ChangeRequest = 'cancel' in body ? { kind: 'cancel' } : { kind: 'plan', ...body };
    return json(200, await services.previews.preview(ownerId, change));
  },
});

registerHttp(subscriptionPreview);
