import { z } from 'zod';
import { idSchema } from '../billing/ids.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const seatSyncBody = z.strictObject({ ownerId: idSchema.optional() });

/**
 * Runs the seat sync's drift repair now (admin role): every per-seat owner, or the one named, compared
 * with Stripe and repaired, audited with cause `seat_sync`. Answers what it found and changed.
 */
export const opsSeatSync = defineRoute({
  name: 'opsSeatSync',
  methods: ['POST'],
  route: 'ops/seats/sync',
  access: 'admin',
  async handle({ request, services, principal }) {
    const body = await readJson(request, seatSyncBody, services.config.maxBodyBytes, { optional: true });
    const report = await services.seatSync.sweep({
      trigger: 'admin',
      actor: principal.userId,
      ...(body.ownerId === undefined ? {} : { ownerId: body.ownerId }),
    });
    return json(200, report);
  },
});

registerHttp(opsSeatSync);
