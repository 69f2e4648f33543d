import { z } from 'zod';
import { INTERVALS, PLAN_NAMES } from '../billing/catalog.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const checkoutBody = z.strictObject({
  plan: z.enum(PLAN_NAMES),
  interval: z.enum(INTERVALS),
  seats: z.number().int().min(1).max(10_000).optional(),
});

/** Starts a Stripe Checkout for a subscription; redirect targets come from configuration only. */
export const billingCheckout = defineRoute({
  name: 'billingCheckout',
  methods: ['POST'],
  route: 'billing/checkout',
  access: 'user',
  async handle({ request, services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    const body = await readJson(request, checkoutBody, services.config.maxBodyBytes);
    return json(201, await services.actions.checkout({ ownerId, ...body }));
  },
});

registerHttp(billingCheckout);
