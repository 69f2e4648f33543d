import { z } from 'zod';
import { idSchema } from '../billing/ids.js';
import { readJson } from '../http/body.js';
import { deleteResponse, putResponse } from '../http/outcome.js';
import { idParams } from '../http/params.js';
import { registerHttp } from '../http/register.js';
import { defineRoute } from '../http/route.js';

const orgBody = z.strictObject({ creatorId: idSchema, name: z.string().trim().min(1).max(200).optional() });

/** The platform pushes an organization with its creator, who becomes its billing owner. */
export const directoryOrg = defineRoute({
  name: 'directoryOrg',
  methods: ['PUT', 'DELETE'],
  route: 'directory/orgs/{orgId}',
  access: 'service',
  async handle({ request, services }) {
    const { orgId } = idParams(request, 'orgId');
    if (request.method === 'DELETE') return deleteResponse(await services.directory.deleteOrg(orgId));
    const body = await readJson(request, orgBody, services.config.maxBodyBytes);
    return putResponse(await services.directory.putOrg(orgId, body));
  },
});

registerHttp(directoryOrg);
