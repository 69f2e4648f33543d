import { z } from 'zod';
import { METER_NAMES } from '../billing/catalog.js';
import { validationError } from '../billing/errors.js';
import { parseInput } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { tenantOf } from '../http/tenant.js';

const DAY = 86_400_000;
const querySchema = z.strictObject({
  from: z.iso.datetime({ offset: true }).or(z.iso.date()).optional(),
  to: z.iso.datetime({ offset: true }).or(z.iso.date()).optional(),
  meter: z.enum(METER_NAMES).default('executions'),
});

/**
 * Usage per period between `from` (default: a year ago) and `to` (default: now), from the counters, so
 * a period that just ended shows its total before the rollover job has closed it.
 */
export const billingUsage = defineRoute({
  name: 'billingUsage',
  methods: ['GET'],
  route: 'billing/usage',
  access: 'user',
  async handle({ request, services, principal }) {
    const { ownerId } = await tenantOf(principal, services.directory);
    const query = parseInput(
      querySchema,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    const now = services.clock.now();
    const to = query.to ? new Date(query.to) : now;
    const from = query.from ? new Date(query.from) : new Date(to.getTime() - 365 * DAY);
    if (from >= to) throw validationError('invalid_range', 'from must be before to.');
    if (to.getTime() - from.getTime() > 5 * 366 * DAY)
      throw validationError('invalid_range', 'At most five years at a time.');
    return json(200, await services.rollover.history({ ownerId, meter: query.meter, from, to }));
  },
});

registerHttp(billingUsage);
