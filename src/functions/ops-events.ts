import { z } from 'zod';
import { validationError } from '../billing/errors.js';
import { LIST_MAX, PoisonCursorError, REPLAY_MAX } from '../billing/poison.js';
import { parseInput, readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(LIST_MAX).default(50),
  cursor: z.string().min(1).max(2048).optional(),
});

/** Event ids as Stripe writes them (`evt_…`); anything else cannot be a poison row's key. */
const eventId = z
  .string()
  .max(255)
  .regex(/^evt_[A-Za-z0-9_]+$/, 'must be a Stripe event id (evt_…)');

const replayBody = z.strictObject({ eventIds: z.array(eventId).max(REPLAY_MAX).optional() });

/*
 * Operator routes live under `ops/`, not `admin/`: the Functions host reserves every route template that
 * starts with "admin" for its own management API and refuses to register such a function ("The specified
 * route conflicts with one or more built in routes"), whatever the route prefix. Access is still the
 * `admin` role.
 */

/**
 * Events the processor gave up on (a permanent failure, every transient attempt used, or a message that
 * was not an event), in event id order, for operators.
 */
export const opsPoisonList = defineRoute({
  name: 'opsPoisonList',
  methods: ['GET'],
  route: 'ops/events/poison',
  access: 'admin',
  async handle({ request, services }) {
    const query = parseInput(
      listQuery,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    try {
      return json(
        200,
        await services.poison.list({
          limit: query.limit,
          ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
        }),
      );
    } catch (error) {
      if (error instanceof PoisonCursorError) {
        throw validationError('invalid_query', `The query is invalid. cursor: ${error.message}`, [
          { path: 'cursor', message: error.message },
        ]);
      }
      throw error;
    }
  },
});

/**
 * Sends poisoned events back to the queue with a fresh attempt count, once their cause is fixed; each
 * row is removed only after its send succeeded. Without `eventIds` (or with an empty list): the first
 * 100 in event id order, with `more` saying whether to call again.
 */
export const opsPoisonReplay = defineRoute({
  name: 'opsPoisonReplay',
  methods: ['POST'],
  route: 'ops/events/poison/replay',
  access: 'admin',
  async handle({ request, services }) {
    const body = await readJson(request, replayBody, services.config.maxBodyBytes, { optional: true });
    const ids = body.eventIds ?? [];
    return json(200, await services.poison.replay(ids.length === 0 ? { all: true } : { eventIds: ids }));
  },
});

registerHttp(opsPoisonList);
registerHttp(opsPoisonReplay);
