import { z } from 'zod';
import { METER_NAMES, type MeterName } from './catalog.js';
import { ENFORCEMENT_MODES } from './enforcement.js';
import type { OwnerId } from './ids.js';
import { BALANCE_ROW } from './owner/keys.js';
import { parseRow as parseOwnerRow } from './owner/rows.js';
import { utcDay } from './periods.js';
import {
  type EntityProps,
  prefixEnd,
  type RowKeyRange,
  type StoredEntity,
  type TransactionAction,
} from './store.js';

/**
 * The row layout of metering, credits and rollover in the `billing` table, in one place.
 *
 * Owner partition (PartitionKey = ownerId), so every change for one owner commits in one entity-group
 * transaction together with the marker that makes it happen once. The counters and the balance are
 * part of the owner snapshot (`owner/keys.ts`):
 * - `s|c|<periodStart>|<meter>|<periodKey>`  counter (see `usage.ts`): used, allowanceUsed, creditsUsed,
 *                                         overage, allowance, periodStart, periodEnd, createdAt, updatedAt
 * - `s|o|bal`                            credit balance
 * - `consume|<idempotencyKey>`           consume marker: the answer given, and `refundedAt` once refunded
 * - `credits|grant|<sourceId>`           grant marker (one per Stripe payment)
 * - `credits|reversal|<sessionId>`       a pack purchase's reversal state: credits taken back so far for
 *                                         its charge's refunds and dispute, and the charge (see
 *                                         `credit-purchases.ts`)
 * - `credits|refused|<sessionId>|<causeKind>|<causeId>`  a refused grant, audited once per cause
 * - `credits|ledger|<newest-first>|<kind>|<ref>`  append-only ledger: grants, draws, refunds,
 *                                         clawbacks and reinstatements
 * - `record|<meter>|<periodKey>`         usage record: the counter's snapshot when the period was closed
 * - `monitor|<at>|consume:<key>`         would-be denial under `monitor` (same shape as entitlements')
 *
 * Rollover partitions (never an owner id: owner ids cannot contain `|`):
 * - `rollover|<YYYY-MM-DD>` / `<ownerId>|<meter>|<periodKey>`  a period that may still need closing,
 *    grouped by the UTC day it ends
 * - `rollover|state` / `cursor`          the earliest day that may still hold index rows
 *
 * Retention partitions (see `retention/`):
 * - `retention|<YYYY-MM>` / `<ownerId>`  an owner with markers or ledger rows that may be due for pruning
 *    in that month
 * - `retention|state` / `cursor`          the earliest month that may still hold index rows
 */

export const CONSUME_MARKER_PREFIX = 'consume|';
export const GRANT_MARKER_PREFIX = 'credits|grant|';
export const consumeMarkerKey = (idempotencyKey: string) => `${CONSUME_MARKER_PREFIX}${idempotencyKey}`;
export const grantMarkerKey = (sourceId: string) => `${GRANT_MARKER_PREFIX}${sourceId}`;
export const reversalRowKey = (sessionId: string) => `credits|reversal|${sessionId}`;
export const refusalMarkerKey = (sessionId: string, causeKind: string, causeId: string) =>
  `credits|refused|${sessionId}|${causeKind}|${causeId}`;
export const LEDGER_PREFIX = 'credits|ledger|';
export const recordPrefix = (meter: MeterName) => `record|${meter}|`;
export const recordRowKey = (meter: MeterName, periodKey: string) => `${recordPrefix(meter)}${periodKey}`;
export const monitorRowKey = (at: string, idempotencyKey: string) =>
  `monitor|${at}|consume:${idempotencyKey}`;

export const ROLLOVER_STATE_PARTITION = 'rollover|state';
export const ROLLOVER_CURSOR_ROW = 'cursor';
export const rolloverPartition = (day: string) => `rollover|${day}`;
export const rolloverPartitionFor = (periodEnd: Date) => rolloverPartition(utcDay(periodEnd));
export const rolloverRowKey = (ownerId: OwnerId, meter: MeterName, periodKey: string) =>
  `${ownerId}|${meter}|${periodKey}`;

/** Largest millisecond timestamp we will see (year 2286); ledger keys count down from it. */
const MAX_MS = 9_999_999_999_999;

export const LEDGER_KINDS = ['grant', 'draw', 'refund', 'clawback', 'reinstate'] as const;
/**
 * `grant`: a pack was paid for; `draw`: consumption beyond the allowance; `refund`: a refunded
 * consumption; `clawback`: credits taken back because the pack's payment was refunded or disputed;
 * `reinstate`: credits given back because a dispute was won.
 */
export type LedgerKind = (typeof LEDGER_KINDS)[number];

/**
 * Ledger rows sort newest first: the key starts with the time counted down, then the position within
 * one transaction counted down. `<kind>|<ref>` (a grant's source, a consumption's key) makes it unique,
 * since each of those happens once.
 */
export function ledgerRowKey(at: Date, seq: number, kind: LedgerKind, ref: string): string {
  const time = String(MAX_MS - at.getTime()).padStart(13, '0');
  const order = String(999 - Math.min(seq, 999)).padStart(3, '0');
  return `${LEDGER_PREFIX}${time}${order}|${kind}|${ref}`;
}

/** The ledger rows written before `cutoff`: the end of the ledger's range, since its keys count time down. */
export function ledgerOlderThan(cutoff: Date): RowKeyRange {
  const time = String(MAX_MS - cutoff.getTime() + 1).padStart(13, '0');
  return { from: `${LEDGER_PREFIX}${time}`, to: prefixEnd(LEDGER_PREFIX) };
}

/** Keys the caller chooses (idempotency keys, payment ids): safe inside row keys, which forbid `/ \ # ?`. */
export const externalKeySchema = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,199}$/,
    'must be 1-200 characters of A-Z, a-z, 0-9, "_", ".", ":" or "-", starting with a letter or digit',
  );

const count = z.number().int().nonnegative();

export const consumeMarkerSchema = z.object({
  outcome: z.enum(['consumed', 'denied']),
  /** Why a denial was denied (absent on markers written before the reason was stored: `limit_exceeded`). */
  reason: z.enum(['limit_exceeded', 'payment_required']).optional(),
  meter: z.enum(METER_NAMES),
  quantity: z.number().int().positive(),
  mode: z.enum(ENFORCEMENT_MODES),
  periodKey: z.string(),
  periodStart: z.string(),
  periodEnd: z.string(),
  used: count,
  allowance: count.optional(),
  allowanceRemaining: count.optional(),
  remaining: count.optional(),
  fromAllowance: count,
  fromCredits: count,
  overage: count,
  shortfall: count,
  /** Signed: a clawback can leave the balance below zero. */
  creditBalance: z.number().int(),
  wouldDeny: z.boolean(),
  at: z.string(),
  refundedAt: z.string().optional(),
  /**
   * The snapshot version the answer's transaction wrote and when its snapshot was read, so a replay is the
   * first answer to the letter (absent on markers written before answers were versioned).
   */
  version: count.optional(),
  asOf: z.string().optional(),
});
export type ConsumeMarker = z.infer<typeof consumeMarkerSchema>;

export const grantMarkerSchema = z.object({
  credits: z.number().int().positive(),
  description: z.string(),
  /** Signed: a grant onto a balance a clawback left below zero can leave it there. */
  balanceAfter: z.number().int(),
  at: z.string(),
});

export const ledgerSchema = z.object({
  kind: z.enum(LEDGER_KINDS),
  /** Signed: positive for grants, refunds and reinstatements, negative for draws and clawbacks. */
  credits: z.number().int(),
  /** Signed: a clawback of credits already spent leaves the balance below zero. */
  balanceAfter: z.number().int(),
  /** The grant's source id or the consumption's idempotency key. */
  ref: z.string(),
  description: z.string(),
  at: z.string(),
  meter: z.enum(METER_NAMES).optional(),
  periodKey: z.string().optional(),
});

/**
 * `credits|reversal|<sessionId>`: how many of a pack purchase's credits are taken back now (`clawed`), so
 * each refund or dispute event applies only the difference to its new target. `chargeId` is set when a
 * refund or dispute was seen before the grant, so the grant can apply it (see `credit-purchases.ts`).
 * `rev` counts the changes, to keep each one's ledger row key unique.
 */
export const reversalSchema = z.object({
  clawed: count,
  rev: count,
  chargeId: z.string().optional(),
  updatedAt: z.string(),
});
export type ReversalRow = z.infer<typeof reversalSchema>;

export const recordSchema = z.object({
  meter: z.enum(METER_NAMES),
  periodKey: z.string(),
  periodStart: z.string(),
  periodEnd: z.string(),
  used: count,
  allowanceUsed: count,
  creditsUsed: count,
  overage: count,
  allowance: count.optional(),
  closedAt: z.string(),
});

export const rolloverIndexSchema = z.object({
  ownerId: z.string().min(1),
  meter: z.enum(METER_NAMES),
  periodKey: z.string().min(1),
  periodStart: z.string(),
  periodEnd: z.string(),
});

export const rolloverCursorSchema = z.object({ day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/) });

/**
 * Parses a row with its schema.
 * @throws CorruptRowError naming the row, so corruption is reported where it is found rather than guessed around
 */
export function parseRow<T>(schema: z.ZodType<T>, row: StoredEntity, _what?: string): T {
  return parseOwnerRow(schema, row);
}

/** Omits a property whose value is `null` (Table Storage stores no nulls). */
export function withOptional(name: string, value: number | null): EntityProps {
  return value === null ? {} : { [name]: value };
}

/** Writes the balance: create when it was never written, else only if still at the `etag` read. */
export function balanceAction(etag: string | undefined, balance: number, at: string): TransactionAction {
  const props = { balance, updatedAt: at };
  return etag === undefined
    ? { kind: 'create', rowKey: BALANCE_ROW, props }
    : { kind: 'update', rowKey: BALANCE_ROW, props, etag };
}
