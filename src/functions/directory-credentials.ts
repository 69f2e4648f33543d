import { z } from 'zod';
import { readJson } from '../http/body.js';
import { deleteResponse, putResponse } from '../http/outcome.js';
import { idParams } from '../http/params.js';
import { registerHttp } from '../http/register.js';
import { defineRoute } from '../http/route.js';
import { workspaceBody } from '../http/workspace-body.js';

const credentialBody = z.strictObject({
  workspace: workspaceBody,
  /** `false` records the credential without enforcing limits (a backfill); it may then be locked. */
  enforce: z.boolean().optional(),
});

/** Credentials count toward their workspace's owner. */
export const directoryCredential = defineRoute({
  name: 'directoryCredential',
  methods: ['PUT', 'DELETE'],
  route: 'directory/credentials/{credentialId}',
  access: 'service',
  async handle({ request, services }) {
    const { credentialId } = idParams(request, 'credentialId');
    if (request.method === 'DELETE')
      return deleteResponse(await services.directory.deleteCredential(credentialId));
    const body = await readJson(request, credentialBody, services.config.maxBodyBytes);
    return putResponse(await services.directory.putCredential(credentialId, body));
  },
});

registerHttp(directoryCredential);
