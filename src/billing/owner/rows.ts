import { z } from 'zod';
import { METER_NAMES } from '../catalog.js';
import type { EntityProps, EntityValue, StoredEntity } from '../store.js';
import { TABLE_LIMITS } from '../store.js';

/**
 * Schemas and encoders of the rows in an owner's partition (keys in `keys.ts`). Each schema is built
 * once, here, and every reader parses with it: a row that does not parse is reported with its key, so
 * on-call can find it, and never read as absent.
 */

export class CorruptRowError extends Error {
  readonly code = 'corrupt_row';
  constructor(
    readonly partitionKey: string,
    readonly rowKey: string,
    detail: string,
  ) {
    super(`Corrupt row ${partitionKey}/${rowKey}: ${detail}`);
    this.name = 'CorruptRowError';
  }
}

export function parseRow<T>(schema: z.ZodType<T>, row: StoredEntity): T {
  const parsed = schema.safeParse(row.props);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return parsed.data;
}

/** Omits a property whose value is `null` or `undefined` (Table Storage stores no nulls). */
export function definedProps(props: Readonly<Record<string, EntityValue | null | undefined>>): EntityProps {
  const out: Record<string, EntityValue> = {};
  for (const [key, value] of Object.entries(props))
    if (value !== null && value !== undefined) out[key] = value;
  return out;
}

const count = z.number().int().nonnegative();

/** `s|c|…`: a usage counter. Only `used` is required: counters written before metering carry nothing else. */
export const counterSchema = z.object({
  /** Everything consumed in the period: from the allowance, from credits and beyond both. */
  used: count,
  allowanceUsed: count.optional(),
  creditsUsed: count.optional(),
  overage: count.optional(),
  /** The allowance last applied; absent when unlimited. */
  allowance: count.optional(),
  meter: z.enum(METER_NAMES).optional(),
  periodKey: z.string().optional(),
  periodStart: z.string().optional(),
  periodEnd: z.string().optional(),
  createdAt: z.string().optional(),
  updatedAt: z.string().optional(),
});

/** `s|o|bal`. Signed: a refunded or disputed pack takes its credits back even when they were spent. */
export const balanceSchema = z.object({ balance: z.number().int(), updatedAt: z.string() });

/** `s|o|seats`. */
export const seatsSchema = z.object({ seats: count });

/** `s|o|seatcap`. Table Storage stores no nulls: no `maxSeats` property means no cap. */
export const seatCapSchema = z
  .object({ maxSeats: z.number().int().positive().optional(), updatedAt: z.string().optional() })
  .transform((row) => ({ maxSeats: row.maxSeats ?? null }));

/** `s|o|org|<orgId>`. */
export const orgRowSchema = z.object({
  name: z.string(),
  createdAt: z.string(),
  workflows: count,
  credentials: count,
  members: count,
  /** Set by a DELETE of the organization before it removes what the organization holds. */
  deleting: z.boolean().optional(),
});
export type OrgRow = z.infer<typeof orgRowSchema>;

/**
 * `s|o|ver`. `createdAt`: when the owner's snapshot was first written (the owner's creation instant, for
 * enforcement cohorts); absent on owners whose state predates it (`ownerCreatedAt`).
 */
export const versionSchema = z.object({
  version: z.number().int().nonnegative(),
  createdAt: z.string().optional(),
});

/** `s|o|ovr`: the owner's overrides as JSON (`access/overrides.ts`), and who set them. */
export const overridesRowSchema = z.object({
  overrides: z.string(),
  updatedAt: z.string(),
  updatedBy: z.string(),
});

/** `s|o|enf`: the owner's enforcement setting as JSON (`enforcement.ts`), and who set it. */
export const enforcementRowSchema = z.object({
  enforcement: z.string(),
  updatedAt: z.string(),
  updatedBy: z.string(),
});

/** `s|o|meta`. */
export const metaSchema = z.object({ schema: z.number().int(), migratedAt: z.string() });

/** `item|<kind>|<workspace>|<id>`. */
export const itemRowSchema = z.object({
  createdAt: z.string(),
  /** The claim that created it (see the directory's item protocol). */
  gen: count,
  /** A released claim's tombstone: blocks a late claim of an attempt that was rolled back. */
  dead: z.boolean().optional(),
});
export type ItemRow = z.infer<typeof itemRowSchema>;

/** `member|<orgId>|<userId>`. */
export const memberRowSchema = z.object({ role: z.string(), addedAt: z.string() });

/** `seat|<userId>`: in how many of the owner's organizations the person is a member. */
export const seatRowSchema = z.object({ orgs: z.number().int().positive() });

/**
 * JSON too long for one string property is spread over `<name>`, `<name>1`, `<name>2`, … (each at most
 * Table Storage's string limit); the entity's own size limit still applies to the whole.
 */
export function chunkedJson(name: string, value: unknown): Record<string, string> {
  const json = JSON.stringify(value);
  const size = TABLE_LIMITS.stringLength;
  const props: Record<string, string> = {};
  for (let i = 0, part = 0; i < json.length || part === 0; i += size, part++) {
    props[part === 0 ? name : `${name}${part}`] = json.slice(i, i + size);
  }
  return props;
}

export function readChunkedJson(props: EntityProps, name: string): unknown {
  let json = '';
  for (let part = 0; ; part++) {
    const value = props[part === 0 ? name : `${name}${part}`];
    if (typeof value !== 'string') break;
    json += value;
  }
  return json === '' ? undefined : JSON.parse(json);
}
