import { z } from 'zod';
import { FORBIDDEN_KEY_CHARACTERS } from '../store.js';

/**
 * Cursors of audit listings: where the last page stopped, base64url JSON, opaque to clients and checked
 * on the way back in (a cursor of another listing, or made up, is refused rather than read from).
 */

const rowKey = z
  .string()
  .min(1)
  .max(1024)
  .refine((key) => !FORBIDDEN_KEY_CHARACTERS.test(key), 'not a row key');

const ownerCursor = z.strictObject({
  s: z.literal('o'),
  /** `n`: rows in the current key layout; `l`: older rows, read after them. */
  p: z.enum(['n', 'l']),
  /** The last row key handed out or read; the next page starts after it. */
  k: rowKey.optional(),
});

const crossCursor = z.strictObject({
  s: z.literal('x'),
  /** The day partition to go on in (`YYYY-MM-DD`). */
  d: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  k: rowKey.optional(),
});

export type OwnerCursor = z.infer<typeof ownerCursor>;
export type CrossCursor = z.infer<typeof crossCursor>;

export class AuditCursorError extends Error {
  readonly code = 'invalid_cursor';
  constructor(detail: string) {
    super(`The cursor is not one this listing returned (${detail}); start again without it.`);
    this.name = 'AuditCursorError';
  }
}

export const encodeCursor = (cursor: OwnerCursor | CrossCursor) =>
  Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');

function decode<T>(schema: z.ZodType<T>, text: string): T {
  if (!/^[A-Za-z0-9_-]{1,2048}$/.test(text)) throw new AuditCursorError('not base64url');
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(text, 'base64url').toString('utf8'));
  } catch {
    throw new AuditCursorError('not JSON');
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new AuditCursorError('not a cursor of this listing');
  return parsed.data;
}

/** @throws AuditCursorError */
export const decodeOwnerCursor = (text: string): OwnerCursor => decode(ownerCursor, text);
/** @throws AuditCursorError */
export const decodeCrossCursor = (text: string): CrossCursor => decode(crossCursor, text);
