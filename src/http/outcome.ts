import type { HttpResponseInit } from '@azure/functions';
import type { DeleteOutcome, PutOutcome } from '../billing/directory/index.js';
import { json } from './route.js';

/** Idempotent PUT: 201 when this call created the resource, 200 when it already existed. */
export function putResponse<T>(outcome: PutOutcome<T>): HttpResponseInit {
  return json(outcome.kind === 'created' ? 201 : 200, outcome.record);
}

/** Idempotent DELETE: 204 whether or not the resource was there, so retries are safe. */
export function deleteResponse(_outcome: DeleteOutcome): HttpResponseInit {
  return { status: 204 };
}
