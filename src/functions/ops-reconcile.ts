import { z } from 'zod';
import { conflict } from '../billing/errors.js';
import { idSchema } from '../billing/ids.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const reconcileBody = z.strictObject({ ownerId: idSchema.optional() });

/**
 * Runs the reconciler now (admin role) and answers what it changed. With `ownerId`, only that owner:
 * its subscription re-read and its paid credit sessions granted, no watermark moved. 409 while a
 * scheduled run holds the state.
 */
export const opsReconcile = defineRoute({
  name: 'opsReconcile',
  methods: ['POST'],
  route: 'ops/reconcile',
  access: 'admin',
  async handle({ request, services, principal }) {
    const body = await readJson(request, reconcileBody, services.config.maxBodyBytes, { optional: true });
    const report = await services.reconciler.run({
      ...(body.ownerId === undefined ? {} : { ownerId: body.ownerId }),
      actor: `admin:${principal.userId}`,
    });
    if (report.outcome === 'busy') {
      throw conflict(
        'reconcile_in_progress',
        `Reconciler run ${report.heldBy?.runId ?? 'unknown'} is in progress (lease until ${report.heldBy?.leaseUntil ?? 'unknown'}); retry after it ends, or pass an ownerId to repair one owner now.`,
      );
    }
    return json(200, report);
  },
});

registerHttp(opsReconcile);
