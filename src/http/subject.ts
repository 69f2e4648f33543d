import { z } from 'zod';
import { idSchema } from '../billing/ids.js';

/** Who a service call is about; resolved to the billing owner through the directory, never trusted as one. */
export const subjectSchema = z
  .strictObject({ userId: idSchema.optional(), orgId: idSchema.optional(), workflowId: idSchema.optional() })
  .refine((s) => s.userId !== undefined || s.orgId !== undefined || s.workflowId !== undefined, {
    message: 'needs one of userId, orgId or workflowId',
  });
