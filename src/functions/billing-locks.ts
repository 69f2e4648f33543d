import { z } from 'zod';
import { idSchema } from '../billing/ids.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const keepBody = z
  .strictObject({
    workflows: z.array(idSchema).max(10_000).optional(),
    credentials: z.array(idSchema).max(10_000).optional(),
  })
  .refine((b) => b.workflows !== undefined || b.credentials !== undefined, {
    message: 'name workflows or credentials',
  });

/**
 * What stays usable when the owner is over a limit (after a downgrade): GET shows what is locked and the
 * owner's picks; PUT sets the picks, kept first (in order) before the oldest. Nothing is ever deleted.
 */
export const billingLocks = defineRoute({
  name: 'billingLocks',
  methods: ['GET', 'PUT'],
  route: 'billing/locks',
  access: 'user',
  async handle({ request, invocation, services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    if (request.method === 'PUT') {
      const body = await readJson(request, keepBody, services.config.maxBodyBytes);
      await services.locks.setPreferences(ownerId, body, {
        actor: principal.userId,
        requestId: invocation.invocationId,
      });
    }
    const snapshot = await services.owners.read(ownerId);
    return json(200, { keep: snapshot.keep.picks, locked: await services.locks.report(snapshot) });
  },
});

registerHttp(billingLocks);
