import { z } from 'zod';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { subjectSchema } from '../http/subject.js';
import { idempotencyKeySchema } from './usage-consume.js';

const refundBody = z.strictObject({ subject: subjectSchema, idempotencyKey: idempotencyKeySchema });

/** Gives back a consumption whose run failed, exactly once; repeating it answers 200 `already_refunded`. */
export const usageRefund = defineRoute({
  name: 'usageRefund',
  methods: ['POST'],
  route: 'usage/refund',
  access: 'service',
  async handle({ request, services }) {
    const body = await readJson(request, refundBody, services.config.maxBodyBytes);
    return json(200, await services.usage.refund(body));
  },
});

registerHttp(usageRefund);
