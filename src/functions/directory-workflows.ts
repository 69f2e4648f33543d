import { z } from 'zod';
import { readJson } from '../http/body.js';
import { deleteResponse, putResponse } from '../http/outcome.js';
import { idParams } from '../http/params.js';
import { registerHttp } from '../http/register.js';
import { defineRoute } from '../http/route.js';
import { workspaceBody } from '../http/workspace-body.js';

const workflowBody = z.strictObject({
  workspace: workspaceBody,
  nodeCount: z.number().int().min(0).max(100_000),
  /** `false` records the workflow without enforcing limits (a backfill); it may then be locked. */
  enforce: z.boolean().optional(),
});

/**
 * Workflows count toward their workspace's owner; PUT with another workspace moves one. A PUT that
 * creates (or moves into a full workspace, or raises the node count over the plan's) is refused with
 * 402 and writes nothing, under `enforce`.
 */
export const directoryWorkflow = defineRoute({
  name: 'directoryWorkflow',
  methods: ['PUT', 'DELETE'],
  route: 'directory/workflows/{workflowId}',
  access: 'service',
  async handle({ request, services }) {
    const { workflowId } = idParams(request, 'workflowId');
    if (request.method === 'DELETE')
      return deleteResponse(await services.directory.deleteWorkflow(workflowId));
    const body = await readJson(request, workflowBody, services.config.maxBodyBytes);
    return putResponse(await services.directory.putWorkflow(workflowId, body));
  },
});

registerHttp(directoryWorkflow);
