import type { HttpRequest } from '@azure/functions';
import { z } from 'zod';
import { idSchema } from '../billing/ids.js';
import { parseInput } from './body.js';

/** Route parameters are untrusted input like any other: each id is validated before it reaches a key. */
export function idParams<const K extends string>(request: HttpRequest, ...names: K[]): Record<K, string> {
  const schema = z.object(Object.fromEntries(names.map((n) => [n, idSchema])) as Record<K, typeof idSchema>);
  const values = Object.fromEntries(names.map((n) => [n, request.params[n]]));
  return parseInput(schema, values, 'invalid_id', 'A path id is invalid.') as Record<K, string>;
}
