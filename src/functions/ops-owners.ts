import { z } from 'zod';
import {
  type OwnerOverrides,
  overrideFlagsSchema,
  overrideLimitsSchema,
} from '../billing/access/overrides.js';
import { ENFORCEMENT_MODES, featureModesSchema, type OwnerEnforcement } from '../billing/enforcement.js';
import { notFound } from '../billing/errors.js';
import { type AdminChange, reasonSchema } from '../billing/ops/admin-change.js';
import type { SettingView } from '../billing/ops/owner-setting.js';
import { readJson } from '../http/body.js';
import { idParams } from '../http/params.js';
import { registerHttp } from '../http/register.js';
import { type AuthenticatedContext, defineRoute, json } from '../http/route.js';

/*
 * Operator settings for one billing owner (admin role), under `ops/` because the Functions host reserves
 * routes starting with "admin". Each change is audited (actor: the admin's `sub`; cause: this request's id;
 * the reason given) in the same transaction as the change. PUT answers 201 when it created the setting,
 * 200 when it replaced or already had it; DELETE answers 204 whether or not there was one; GET answers 404
 * when there is none.
 */

const overridesBody = z
  .strictObject({
    limits: overrideLimitsSchema.optional(),
    flags: overrideFlagsSchema.optional(),
    expiresAt: z.iso.datetime({ offset: true }).nullable().optional(),
    reason: reasonSchema,
  })
  .refine((body) => Object.keys(body.limits ?? {}).length + Object.keys(body.flags ?? {}).length > 0, {
    message: 'name at least one limit or flag',
    path: ['limits'],
  });

const enforcementBody = z.strictObject({
  mode: z.enum(ENFORCEMENT_MODES),
  features: featureModesSchema.optional(),
  reason: reasonSchema,
});

const deleteBody = z.strictObject({ reason: reasonSchema });

function adminChange(context: AuthenticatedContext, reason: string): AdminChange {
  return { actor: context.principal.userId, requestId: context.invocation.invocationId, reason };
}

const overridesView = (view: SettingView<OwnerOverrides>) => ({
  ownerId: view.ownerId,
  limits: view.value.limits,
  flags: view.value.flags,
  expiresAt: view.value.expiresAt,
  updatedAt: view.updatedAt,
  updatedBy: view.updatedBy,
  version: view.version,
});

const enforcementView = (view: SettingView<OwnerEnforcement>) => ({
  ownerId: view.ownerId,
  mode: view.value.mode,
  features: view.value.features,
  updatedAt: view.updatedAt,
  updatedBy: view.updatedBy,
  version: view.version,
});

/** Limits and flags for one owner on top of its plan, optionally until `expiresAt`. */
export const opsOwnerOverrides = defineRoute({
  name: 'opsOwnerOverrides',
  methods: ['GET', 'PUT', 'DELETE'],
  route: 'ops/owners/{ownerId}/overrides',
  access: 'admin',
  async handle(context) {
    const { request, services } = context;
    const { ownerId } = idParams(request, 'ownerId');
    if (request.method === 'GET') {
      const view = await services.overrides.get(ownerId);
      if (!view) throw notFound('overrides_not_set', `Owner ${ownerId} has no overrides.`);
      return json(200, overridesView(view));
    }
    if (request.method === 'DELETE') {
      const body = await readJson(request, deleteBody, services.config.maxBodyBytes);
      await services.overrides.clear(ownerId, adminChange(context, body.reason));
      return { status: 204 };
    }
    const body = await readJson(request, overridesBody, services.config.maxBodyBytes);
    const result = await services.overrides.set(
      ownerId,
      { limits: body.limits ?? {}, flags: body.flags ?? {}, expiresAt: body.expiresAt ?? null },
      adminChange(context, body.reason),
    );
    return json(result.outcome === 'created' ? 201 : 200, overridesView(result));
  },
});

/** The enforcement modes of one owner: first in the resolution order (`billing/enforcement.ts`). */
export const opsOwnerEnforcement = defineRoute({
  name: 'opsOwnerEnforcement',
  methods: ['GET', 'PUT', 'DELETE'],
  route: 'ops/owners/{ownerId}/enforcement',
  access: 'admin',
  async handle(context) {
    const { request, services } = context;
    const { ownerId } = idParams(request, 'ownerId');
    if (request.method === 'GET') {
      const view = await services.ownerEnforcement.get(ownerId);
      if (!view)
        throw notFound('enforcement_not_set', `Owner ${ownerId} has no enforcement setting of its own.`);
      return json(200, enforcementView(view));
    }
    if (request.method === 'DELETE') {
      const body = await readJson(request, deleteBody, services.config.maxBodyBytes);
      await services.ownerEnforcement.clear(ownerId, adminChange(context, body.reason));
      return { status: 204 };
    }
    const body = await readJson(request, enforcementBody, services.config.maxBodyBytes);
    const result = await services.ownerEnforcement.set(
      ownerId,
      { mode: body.mode, features: body.features ?? {} },
      adminChange(context, body.reason),
    );
    return json(result.outcome === 'created' ? 201 : 200, enforcementView(result));
  },
});

registerHttp(opsOwnerOverrides);
registerHttp(opsOwnerEnforcement);
