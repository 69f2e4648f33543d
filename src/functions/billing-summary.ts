import { z } from 'zod';
import { isVersionNotReached } from '../billing/owner/versioned.js';
import { parseInput } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { tenantOf } from '../http/tenant.js';

const summaryQuery = z.strictObject({
  minVersion: z.coerce.number().int().nonnegative().optional(),
});

/** The billing page for the token's workspace: owner, plan, status, limits, usage, flags. */
export const billingSummary = defineRoute({
  name: 'billingSummary',
  methods: ['GET'],
  route: 'billing/summary',
  access: 'user',
  async handle({ request, services, principal }) {
    const { minVersion } = parseInput(
      summaryQuery,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    const summarize = async (fresh: boolean) => {
      const { ownerId, workspace } = await tenantOf(principal, services.directory, { fresh });
      return services.summaries.forWorkspace(ownerId, workspace, principal.userId, { minVersion });
    };
    try {
      return json(200, await summarize(false));
    } catch (error) {
      // The organization's creator came from memory: the version asked for may be another owner's (the
      // organization deleted and created again). Look it up afresh once before answering 409.
      if (!isVersionNotReached(error) || principal.orgId === undefined) throw error;
      return json(200, await summarize(true));
    }
  },
});

registerHttp(billingSummary);
