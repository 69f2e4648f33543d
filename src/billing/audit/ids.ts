import { idSchema } from '../ids.js';
import { FORBIDDEN_KEY_CHARACTERS, TABLE_LIMITS } from '../store.js';
import { AUDIT_PREFIX, GLOBAL_AUDIT_PARTITION } from './entry.js';

/**
 * Audit ids: what the API hands out for one row and takes back (`/api/ops/audit/{id}/revert`, `revertOf`).
 * An id is the row's partition and key, so finding the row is one point read with no lookup table, and
 * it is stable for as long as the row exists. It is opaque to clients (`a1` and base64url, URL-safe
 * without escaping) so that the key layout can change behind a new version prefix.
 */

const VERSION = 'a1';
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** Both keys at their longest, base64url-encoded, with the prefix. */
const MAX_ID_LENGTH = VERSION.length + Math.ceil(((TABLE_LIMITS.keyLength * 2 + 1) * 4) / 3) + 4;

export interface AuditRowAddress {
  readonly partitionKey: string;
  readonly rowKey: string;
}

export function encodeAuditId(partitionKey: string, rowKey: string): string {
  return VERSION + Buffer.from(`${partitionKey}\n${rowKey}`, 'utf8').toString('base64url');
}

/** Why `id` cannot be an audit id. */
export class InvalidAuditIdError extends Error {
  readonly code = 'invalid_audit_id';
  constructor(detail: string) {
    super(`Not an audit id: ${detail}. Use an \`id\` from GET /api/ops/audit.`);
    this.name = 'InvalidAuditIdError';
  }
}

/**
 * The row an id names. Validates everything a row key must be, so a made-up id is refused here rather
 * than sent to storage.
 * @throws InvalidAuditIdError
 */
export function decodeAuditId(id: string): AuditRowAddress {
  if (id.length > MAX_ID_LENGTH) throw new InvalidAuditIdError('too long');
  if (!id.startsWith(VERSION)) throw new InvalidAuditIdError('unknown version');
  const body = id.slice(VERSION.length);
  if (!BASE64URL.test(body)) throw new InvalidAuditIdError('not base64url');
  const text = Buffer.from(body, 'base64url').toString('utf8');
  // Base64 decoding forgives; only the canonical encoding of a valid address is an id.
  if (Buffer.from(text, 'utf8').toString('base64url') !== body)
    throw new InvalidAuditIdError('not canonical');
  const split = text.indexOf('\n');
  if (split < 0) throw new InvalidAuditIdError('no row key');
  const partitionKey = text.slice(0, split);
  const rowKey = text.slice(split + 1);
  if (partitionKey !== GLOBAL_AUDIT_PARTITION && !idSchema.safeParse(partitionKey).success)
    throw new InvalidAuditIdError('not an owner');
  if (!rowKey.startsWith(AUDIT_PREFIX) || rowKey.length > TABLE_LIMITS.keyLength)
    throw new InvalidAuditIdError('not an audit row');
  if (FORBIDDEN_KEY_CHARACTERS.test(rowKey)) throw new InvalidAuditIdError('not a row key');
  return { partitionKey, rowKey };
}
