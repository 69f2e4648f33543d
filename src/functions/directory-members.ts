import { z } from 'zod';
import { readJson } from '../http/body.js';
import { deleteResponse, putResponse } from '../http/outcome.js';
import { idParams } from '../http/params.js';
import { registerHttp } from '../http/register.js';
import { defineRoute } from '../http/route.js';

const memberBody = z.strictObject({
  role: z.string().trim().min(1).max(50).optional(),
  /** `false` records the member without enforcing the seat limit (a backfill). */
  enforce: z.boolean().optional(),
});

/** Membership drives seats and who may read an organization's billing. */
export const directoryMember = defineRoute({
  name: 'directoryMember',
  methods: ['PUT', 'DELETE'],
  route: 'directory/orgs/{orgId}/members/{userId}',
  access: 'service',
  async handle({ request, services }) {
    const { orgId, userId } = idParams(request, 'orgId', 'userId');
    if (request.method === 'DELETE')
      return deleteResponse(await services.directory.deleteMember(orgId, userId));
    const body = await readJson(request, memberBody, services.config.maxBodyBytes, { optional: true });
    return putResponse(await services.directory.putMember(orgId, userId, body));
  },
});

registerHttp(directoryMember);
