import { z } from 'zod';
import { requireBillingOwner } from '../http/billing-owner.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const seatsBody = z.strictObject({ maxSeats: z.number().int().min(1).max(100_000).nullable() });

/**
 * Sets or clears the billing owner's cap on billable seats. Only the billing owner may: it bounds what
 * they pay. A member PUT past the cap answers 402 `seat_cap_reached`; people already in stay.
 */
export const billingSeats = defineRoute({
  name: 'billingSeats',
  methods: ['PUT'],
  route: 'billing/seats',
  access: 'user',
  async handle({ request, invocation, services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    const body = await readJson(request, seatsBody, services.config.maxBodyBytes);
    const result = await services.seatCaps.set({
      ownerId,
      maxSeats: body.maxSeats,
      actor: principal.userId,
      requestId: invocation.invocationId,
    });
    return json(200, { maxSeats: result.maxSeats });
  },
});

registerHttp(billingSeats);
