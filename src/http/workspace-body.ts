import { z } from 'zod';
import { idSchema, type Workspace } from '../billing/ids.js';

/** `{ "orgId": "…" }` for an organization, `{ "userId": "…" }` for a personal workspace. */
export const workspaceBody = z
  .union([z.strictObject({ orgId: idSchema }), z.strictObject({ userId: idSchema })], {
    error: 'must be { "orgId": "<id>" } for an organization or { "userId": "<id>" } for a personal workspace',
  })
  .transform(
    (w): Workspace =>
      'orgId' in w ? { kind: 'org', orgId: w.orgId } : { kind: 'personal', userId: w.userId },
  );
