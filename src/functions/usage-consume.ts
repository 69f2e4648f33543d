import { z } from 'zod';
import { METER_NAMES } from '../billing/catalog.js';
import { externalKeySchema } from '../billing/metering-rows.js';
import { readJson } from '../http/body.js';
import { problemResponse } from '../http/problem.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { subjectSchema } from '../http/subject.js';

/** The metering domain's own key rule, so the HTTP boundary and the domain never disagree. */
export const idempotencyKeySchema = externalKeySchema;

const consumeBody = z.strictObject({
  subject: subjectSchema,
  meter: z.enum(METER_NAMES),
  quantity: z.number().int().min(1).max(1_000_000).default(1),
  idempotencyKey: idempotencyKeySchema,
  /** Decide from at least this version of the owner's snapshot (409 `version_not_reached` if none yet). */
  minVersion: z.number().int().nonnegative().optional(),
});

/**
 * Checks and consumes atomically, exactly once per idempotency key (a replay answers the original answer
 * and counts nothing). 200 when consumed; 402 when the allowance and credits cannot cover it under
 * `enforce`, with what is left, and nothing consumed.
 */
export const usageConsume = defineRoute({
  name: 'usageConsume',
  methods: ['POST'],
  route: 'usage/consume',
  access: 'service',
  async handle({ request, services, invocation }) {
    const body = await readJson(request, consumeBody, services.config.maxBodyBytes);
    const answer = await services.usage.consume(body);
    if (answer.kind === 'consumed') return json(200, answer.outcome);
    const { outcome } = answer;
    return problemResponse(
      {
        type: `/problems/${answer.code}`,
        title: 'Payment Required',
        status: 402,
        detail:
          answer.code === 'payment_required'
            ? 'Payment is overdue: the account is on free limits until the invoice is paid. Nothing was consumed.'
            : `The ${outcome.meter} allowance and credits cannot cover ${outcome.quantity}; ${outcome.remaining ?? 0} left until ${outcome.periodEnd}. Nothing was consumed.`,
        code: answer.code,
        instance: invocation.invocationId,
      },
      {},
      {
        reason: answer.code,
        meter: outcome.meter,
        replayed: outcome.replayed,
        used: outcome.used,
        allowance: outcome.allowance,
        remaining: outcome.remaining,
        shortfall: outcome.shortfall,
        creditBalance: outcome.creditBalance,
        periodEnd: outcome.periodEnd,
        version: outcome.version,
        asOf: outcome.asOf,
      },
    );
  },
});

registerHttp(usageConsume);
