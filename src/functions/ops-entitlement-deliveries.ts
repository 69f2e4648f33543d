import { z } from 'zod';
import { BillingError } from '../billing/errors.js';
import { REPLAY_MAX } from '../billing/feed/webhook.js';
import type { Services } from '../composition.js';
import { parseInput, readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().min(1).max(1024).optional(),
});

/** `<ownerId>:<version>`, as the failed list and the webhook's `Entitlements-Event-Id` header name them. */
const deliveryId = z
  .string()
  .max(600)
  .regex(/^[^:]+:[1-9]\d*$/, 'must be <ownerId>:<version>');

const replayBody = z.strictObject({ ids: z.array(deliveryId).max(REPLAY_MAX).optional() });

function webhooksOf(services: Services) {
  const webhooks = services.feed.webhooks;
  if (!webhooks)
    throw new BillingError(
      'conflict',
      'webhook_not_configured',
      'Entitlement webhooks are off: set ENTITLEMENT_WEBHOOK_URL and ENTITLEMENT_WEBHOOK_SECRET.',
    );
  return webhooks;
}

/*
 * Operator routes live under `ops/` (the Functions host reserves `admin/` routes and function names).
 */

/** Webhook deliveries of `entitlements.changed` that used up their attempts, for an operator. */
export const opsEntitlementDeliveriesFailed = defineRoute({
  name: 'opsEntitlementDeliveriesFailed',
  methods: ['GET'],
  route: 'ops/entitlements/deliveries/failed',
  access: 'admin',
  async handle({ request, services }) {
    const query = parseInput(
      listQuery,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    return json(
      200,
      await webhooksOf(services).listFailed({
        limit: query.limit,
        ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
      }),
    );
  },
});

/** Queues failed deliveries again with a fresh attempt count (none named: the first 100). */
export const opsEntitlementDeliveriesReplay = defineRoute({
  name: 'opsEntitlementDeliveriesReplay',
  methods: ['POST'],
  route: 'ops/entitlements/deliveries/replay',
  access: 'admin',
  async handle({ request, services }) {
    const body = await readJson(request, replayBody, services.config.maxBodyBytes, { optional: true });
    const ids = body.ids ?? [];
    return json(200, await webhooksOf(services).replay(ids.length === 0 ? 'all' : ids));
  },
});

registerHttp(opsEntitlementDeliveriesFailed);
registerHttp(opsEntitlementDeliveriesReplay);
