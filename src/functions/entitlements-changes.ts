import { z } from 'zod';
import { forbidden, validationError } from '../billing/errors.js';
import { CHANGES_MAX } from '../billing/feed/changes.js';
import { idSchema } from '../billing/ids.js';
import { parseInput } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const changesQuery = z.strictObject({
  since: z.coerce.number().int().nonnegative(),
  ownerId: idSchema.optional(),
  limit: z.coerce.number().int().min(1).max(CHANGES_MAX).default(50),
});

/**
 * The entitlement change feed, read back: the `entitlements.changed` events of one billing owner after
 * version `since`, ascending, for a consumer catching up after downtime. A service token names the owner
 * (`ownerId`, as it names subjects on `/api/entitlements/check`); a user token reads only the feed of the
 * owner it is (`ownerId` omitted or its own id).
 */
export const entitlementsChanges = defineRoute({
  name: 'entitlementsChanges',
  methods: ['GET'],
  route: 'entitlements/changes',
  access: 'user',
  async handle({ request, services, principal }) {
    const query = parseInput(
      changesQuery,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    let ownerId = query.ownerId;
    if (!principal.roles.has('service')) {
      if (ownerId !== undefined && ownerId !== principal.userId)
        throw forbidden('not_the_owner', "A user token reads only its own billing owner's changes.");
      ownerId = principal.userId;
    } else if (ownerId === undefined) {
      throw validationError('owner_required', 'A service token must name the owner (ownerId).', [
        { path: 'ownerId', message: 'required with a service token' },
      ]);
    }
    return json(200, await services.feed.changes(ownerId, query.since, query.limit));
  },
});

registerHttp(entitlementsChanges);
