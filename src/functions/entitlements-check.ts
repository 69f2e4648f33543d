import { z } from 'zod';
import { FEATURE_NAMES } from '../billing/catalog.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { subjectSchema } from '../http/subject.js';

export const checkRequestSchema = z.strictObject({
  subject: subjectSchema,
  feature: z.enum(FEATURE_NAMES),
  quantity: z.number().int().min(0).max(1_000_000).optional(),
  /** Answer from at least this version of the owner's snapshot (409 `version_not_reached` if none yet). */
  minVersion: z.number().int().nonnegative().optional(),
  /** Add the decision trace; off the hot path unless asked for. */
  explain: z.boolean().optional(),
});

/**
 * "May this subject do this?" for the platform's services: 200 with a decision, allowed or not. Errors are
 * for requests that cannot be answered: bad input (400), a subject the directory does not know (404), a `minVersion` not reached (409).
 */
export const entitlementsCheck = defineRoute({
  name: 'entitlementsCheck',
  methods: ['POST'],
  route: 'entitlements/check',
  access: 'service',
  async handle({ request, services }) {
    const body = await readJson(request, checkRequestSchema, services.config.maxBodyBytes);
    return json(200, await services.entitlements.check(body));
  },
});

registerHttp(entitlementsCheck);
