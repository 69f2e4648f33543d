import { z } from 'zod';
import { reasonSchema } from '../billing/ops/admin-change.js';
import { cohortRulesSchema } from '../billing/ops/cohorts.js';
import { monitorFeatureSchema } from '../billing/ops/monitor.js';
import { parseInput, readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const cohortsBody = z.strictObject({ rules: cohortRulesSchema, reason: reasonSchema });

/**
 * Enforcement by owner age, for rolling a limit out (admin role): the rules replace the stored ones (an
 * empty list removes them). Every process applies them within 30 seconds (`billing/ops/cohorts.ts`).
 */
export const opsEnforcementCohorts = defineRoute({
  name: 'opsEnforcementCohorts',
  methods: ['GET', 'PUT'],
  route: 'ops/enforcement/cohorts',
  access: 'admin',
  async handle({ request, services, principal, invocation }) {
    if (request.method === 'GET') return json(200, await services.cohorts.read());
    const body = await readJson(request, cohortsBody, services.config.maxBodyBytes);
    const result = await services.cohorts.set(body.rules, {
      actor: principal.userId,
      requestId: invocation.invocationId,
      reason: body.reason,
    });
    return json(200, { rules: result.rules, updatedAt: result.updatedAt, updatedBy: result.updatedBy });
  },
});

const monitorQuery = z.strictObject({
  feature: monitorFeatureSchema.optional(),
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
});

/**
 * Would-be denials per owner and feature in a window (admin role): what switching to `enforce` would
 * refuse. Reads the day index of monitored owners, then those owners' records; never the whole table.
 */
export const opsMonitor = defineRoute({
  name: 'opsMonitor',
  methods: ['GET'],
  route: 'ops/monitor',
  access: 'admin',
  async handle({ request, services }) {
    const query = parseInput(
      monitorQuery,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    return json(
      200,
      await services.monitor.report({
        feature: query.feature,
        from: query.from === undefined ? undefined : new Date(query.from),
        to: query.to === undefined ? undefined : new Date(query.to),
      }),
    );
  },
});

registerHttp(opsEnforcementCohorts);
registerHttp(opsMonitor);
