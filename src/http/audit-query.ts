import { z } from 'zod';
import { AuditCursorError } from '../billing/audit/cursor.js';
import { AUDIT_ACTOR_KINDS, AUDIT_CAUSE_KINDS } from '../billing/audit/entry.js';
import { AUDIT_PAGE_MAX, type AuditPage, type AuditQuery } from '../billing/audit/query.js';
import { validationError } from '../billing/errors.js';
import { idSchema } from '../billing/ids.js';
import { parseInput } from './body.js';

/** `actor`: a kind (`stripe`), a kind and an id (`user:alice`), or an id (`alice`). */
const actorFilter = z
  .string()
  .regex(
    new RegExp(`^((${AUDIT_ACTOR_KINDS.join('|')}):)?[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$`),
    'an actor kind, kind:id, or an id',
  );

const instant = z.iso.datetime({ offset: true }).or(z.iso.date());

const common = {
  from: instant.optional(),
  to: instant.optional(),
  cause: z.enum(AUDIT_CAUSE_KINDS).optional(),
  actor: actorFilter.optional(),
  limit: z.coerce.number().int().min(1).max(AUDIT_PAGE_MAX).default(50),
  cursor: z.string().min(1).max(2048).optional(),
};

const opsAuditQuery = z.strictObject({ ...common, ownerId: idSchema.optional() });
const ownerAuditQuery = z.strictObject(common);

/** A validated listing query: the owner asked for (operators only) and the filter. */
export interface ParsedAuditQuery {
  readonly ownerId: string | undefined;
  readonly filter: AuditQuery;
}

/**
 * The query of an audit listing, validated: 400 `invalid_query` with every problem named. `ownerId` is a
 * parameter of the operators' listing only; the billing owner's comes from the token.
 */
export function parseAuditQuery(
  query: URLSearchParams,
  options: { readonly ownerParam: boolean },
): ParsedAuditQuery {
  const values = Object.fromEntries(query);
  const parsed: z.infer<typeof opsAuditQuery> = options.ownerParam
    ? parseInput(opsAuditQuery, values, 'invalid_query', 'The query is invalid.')
    : parseInput(ownerAuditQuery, values, 'invalid_query', 'The query is invalid.');
  const from = parsed.from === undefined ? undefined : new Date(parsed.from);
  const to = parsed.to === undefined ? undefined : new Date(parsed.to);
  if (from !== undefined && to !== undefined && from >= to)
    throw validationError('invalid_query', 'The query is invalid. to: must be after from', [
      { path: 'to', message: 'must be after from' },
    ]);
  return {
    ownerId: parsed.ownerId,
    filter: {
      from,
      to,
      cause: parsed.cause,
      actor: parsed.actor,
      limit: parsed.limit,
      cursor: parsed.cursor,
    },
  };
}

/** Runs a listing, answering a cursor it did not make with 400 like any other bad query value. */
export async function withCursorCheck(list: () => Promise<AuditPage>): Promise<AuditPage> {
  try {
    return await list();
  } catch (error) {
    if (error instanceof AuditCursorError)
      throw validationError('invalid_query', `The query is invalid. cursor: ${error.message}`, [
        { path: 'cursor', message: error.message },
      ]);
    throw error;
  }
}
