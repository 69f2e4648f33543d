import { z } from 'zod';
import { auditAction } from './audit/entry.js';
import type { MeterName } from './catalog.js';
import type { Clock } from './clock.js';
import { type FieldIssue, validationError } from './errors.js';
import { idSchema, type OwnerId } from './ids.js';
import { createOwnerLanes, type OwnerLanes } from './metering-lanes.js';
import {
  balanceAction,
  externalKeySchema,
  grantMarkerKey,
  grantMarkerSchema,
  LEDGER_PREFIX,
  type LedgerKind,
  ledgerRowKey,
  ledgerSchema,
  parseRow,
} from './metering-rows.js';
import { BALANCE_ROW } from './owner/keys.js';
import { balanceSchema, parseRow as parseOwnerRow } from './owner/rows.js';
import { type OwnerSnapshot, withVersion } from './owner/snapshot.js';
import { commit, RETRY, write } from './storage/commit.js';
import { readRows } from './storage/read-rows.js';
import {
  ConcurrencyExhaustedError,
  type EntityTable,
  FORBIDDEN_KEY_CHARACTERS,
  type StoredEntity,
  TABLE_LIMITS,
} from './store.js';

const readBalance = (row: StoredEntity) => parseOwnerRow(balanceSchema, row).balance;

/**
 * Purchased credits: one balance per billing owner (`credits|balance` in the owner's partition), drawn
 * by `consume` once a meter's period allowance is used up, and an append-only ledger of every change.
 * A grant happens once per source (the Stripe checkout session or payment intent that paid for it):
 * its marker is created in the same transaction as the balance change.
 */
export interface Credits {
  /** @throws BillingError `validation`; CreditsContentionError */
  grantCredits(request: GrantRequest): Promise<GrantOutcome>;
  /** May be below zero: a refunded or disputed pack takes back credits already spent. */
  balance(ownerId: OwnerId): Promise<number>;
  /** The newest entries, newest first: the first page of `ledgerPage`. */
  ledger(ownerId: OwnerId, options?: { readonly limit?: number }): Promise<LedgerEntry[]>;
  /**
   * One page of the ledger, newest first, reading at most one row more than the page from storage.
   * @throws LedgerCursorError for a cursor `ledgerPage` did not return
   */
  ledgerPage(ownerId: OwnerId, options?: LedgerPageOptions): Promise<LedgerPage>;
}

export interface LedgerPageOptions {
  /** Entries per page, 1 to `LEDGER_PAGE_MAX`. @default 50 */
  readonly limit?: number;
  /** The `nextCursor` of the previous page. */
  readonly cursor?: string;
}

export interface LedgerPage {
  readonly entries: LedgerEntry[];
  /** Pass back as `cursor` for the next (older) page; `null` on the last. */
  readonly nextCursor: string | null;
}

export interface GrantRequest {
  readonly ownerId: OwnerId;
  /** A positive integer. */
  readonly credits: number;
  /** What paid for them, e.g. a checkout session id (`cs_…`) or payment intent id (`pi_…`). Once per id. */
  readonly sourceId: string;
  /** For the ledger, e.g. the pack's display name. */
  readonly description: string;
  /** Who granted them, for the audit row (a service's or an operator's `sub`). @default 'billing' */
  readonly actor?: string;
}

export type GrantOutcome =
  | {
      readonly kind: 'granted';
      readonly ownerId: OwnerId;
      readonly sourceId: string;
      readonly credits: number;
      readonly creditBalance: number;
      readonly grantedAt: string;
    }
  /** This source was granted before; nothing changed now. `credits` and `grantedAt` are the first grant's. */
  | {
      readonly kind: 'duplicate';
      readonly ownerId: OwnerId;
      readonly sourceId: string;
      readonly credits: number;
      readonly grantedAt: string;
    };

export interface LedgerEntry {
  readonly kind: LedgerKind;
  /** Signed: positive for grants, refunds and reinstatements, negative for draws and clawbacks. */
  readonly credits: number;
  /** May be below zero after a clawback of spent credits. */
  readonly balanceAfter: number;
  /** The grant's source id, or the consumption's idempotency key. */
  readonly ref: string;
  readonly description: string;
  readonly at: string;
  readonly meter: MeterName | null;
  readonly periodKey: string | null;
}

/** A ledger cursor that `ledgerPage` did not return (forged, truncated, or from another listing). */
export class LedgerCursorError extends Error {
  readonly code = 'invalid_cursor';
  constructor(options: { readonly cause?: unknown } = {}) {
    super('The cursor is not one this endpoint returned.', options);
    this.name = 'LedgerCursorError';
  }
}

/** Gave up after too many lost races with other processes; nothing was granted. Retry. */
export class CreditsContentionError extends ConcurrencyExhaustedError {}

export interface CreditsDeps {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  /** Reads owner snapshots (the balance, and the version a grant bumps). */
  readonly owners: { read(ownerId: OwnerId): Promise<OwnerSnapshot> };
  readonly clock: Clock;
  /** The lanes given to `createMetering`, so a grant queues behind consumptions. @default a new one */
  readonly lanes?: OwnerLanes;
  /** Rounds of ETag conflicts with other processes before giving up. @default 10 */
  readonly maxAttempts?: number;
}

const grantSchema = z.object({
  ownerId: idSchema,
  credits: z.number().int().min(1).max(100_000_000),
  sourceId: externalKeySchema,
  description: z.string().min(1).max(500),
});

export const DEFAULT_LEDGER_LIMIT = 50;
export const LEDGER_PAGE_MAX = 100;

/**
 * The HTTP cursor is the last row key handed out, base64url-encoded. Only a ledger row key is accepted, and
 * the next page is read in the caller's own partition, after that key and inside the ledger's prefix: a
 * forged cursor can skip entries of the caller's own ledger, never reach another row or another owner.
 */
const LEDGER_KEY = /^credits\|ledger\|\d{16}\|[a-z]+\|[^|]+$/;
const encodeLedgerCursor = (rowKey: string) => Buffer.from(rowKey, 'utf8').toString('base64url');

function decodeLedgerCursor(cursor: string): string {
  const rowKey = Buffer.from(cursor, 'base64url').toString('utf8');
  // base64url decoding never throws: a cursor is accepted only if it round-trips and names a ledger row.
  const valid =
    rowKey.startsWith(LEDGER_PREFIX) &&
    LEDGER_KEY.test(rowKey) &&
    !FORBIDDEN_KEY_CHARACTERS.test(rowKey) &&
    rowKey.length <= TABLE_LIMITS.keyLength;
  if (encodeLedgerCursor(rowKey) !== cursor || !valid) throw new LedgerCursorError();
  return rowKey;
}

const toEntry = (row: StoredEntity): LedgerEntry => {
  const entry = parseRow(ledgerSchema, row, 'ledger entry');
  return { ...entry, meter: entry.meter ?? null, periodKey: entry.periodKey ?? null };
};

export function createCredits(deps: CreditsDeps): Credits {
  const { table, clock, owners } = deps;
  const lanes = deps.lanes ?? createOwnerLanes();
  const maxAttempts = deps.maxAttempts ?? 10;

  const duplicateOf = async (ownerId: OwnerId, sourceId: string): Promise<GrantOutcome | undefined> => {
    const row = await table.get(ownerId, grantMarkerKey(sourceId));
    if (!row) return undefined;
    const marker = parseRow(grantMarkerSchema, row, 'grant marker');
    return { kind: 'duplicate', ownerId, sourceId, credits: marker.credits, grantedAt: marker.at };
  };

  async function grantCredits(input: GrantRequest): Promise<GrantOutcome> {
    const parsed = grantSchema.safeParse(input);
    if (!parsed.success) {
      const details: FieldIssue[] = parsed.error.issues.map((issue) => ({
        path: issue.path.map(String).join('.'),
        message: issue.message,
      }));
      throw validationError(
        'invalid_credit_grant',
        `Invalid credit grant: ${details.map((d) => `${d.path} ${d.message}`).join('; ')}`,
        details,
      );
    }
    const { ownerId, credits, sourceId, description } = parsed.data;
    return lanes.run(ownerId, () =>
      commit<GrantOutcome>(
        table,
        ownerId,
        async () => {
          const snapshot = await owners.read(ownerId);
          const now = clock.now();
          const at = now.toISOString();
          const balanceAfter = snapshot.balance.credits + credits;
          return write(
            withVersion(snapshot, [
              // First: if it fails as a duplicate, the failing index says so.
              {
                kind: 'create',
                rowKey: grantMarkerKey(sourceId),
                props: { credits, description, balanceAfter, at },
              },
              balanceAction(snapshot.balance.etag, balanceAfter, at),
              {
                kind: 'create',
                rowKey: ledgerRowKey(now, 0, 'grant', sourceId),
                props: { kind: 'grant', credits, balanceAfter, ref: sourceId, description, at },
              },
              auditAction(
                {
                  at,
                  kind: 'credits_granted',
                  actor: { kind: 'service', id: input.actor ?? 'billing' },
                  cause: { kind: 'action', id: sourceId, type: 'credits.grant' },
                  before: { balance: snapshot.balance.credits },
                  after: { balance: balanceAfter },
                  details: { credits, description },
                },
                `grant-${sourceId}`,
              ),
            ]),
            () => ({
              kind: 'granted',
              ownerId,
              sourceId,
              credits,
              creditBalance: balanceAfter,
              grantedAt: at,
            }),
            async (error) =>
              error.reason === 'exists' ? ((await duplicateOf(ownerId, sourceId)) ?? RETRY) : RETRY,
          );
        },
        {
          what: `granting credits from ${sourceId} to ${ownerId}`,
          maxAttempts,
          exhausted: (message, tableName, cause) => new CreditsContentionError(message, tableName, { cause }),
        },
      ),
    );
  }

  async function ledgerPage(ownerId: OwnerId, options: LedgerPageOptions = {}): Promise<LedgerPage> {
    const limit = Math.min(LEDGER_PAGE_MAX, Math.max(1, Math.floor(options.limit ?? DEFAULT_LEDGER_LIMIT)));
    const after = options.cursor === undefined ? undefined : decodeLedgerCursor(options.cursor);
    // Keys count time down, so key order is newest first. One row beyond the page says whether another
    // follows, so the last page says so itself. Table Storage may answer a page short (with a token to go
    // on): ask again for what is missing, so at most `limit + 1` rows are ever read.
    const rows = await readRows(table, ownerId, { prefix: LEDGER_PREFIX, after }, limit + 1);
    const entries = rows.slice(0, limit);
    const last = entries.at(-1);
    return {
      entries: entries.map(toEntry),
      nextCursor: rows.length > limit && last ? encodeLedgerCursor(last.rowKey) : null,
    };
  }

  return {
    grantCredits,

    async balance(ownerId) {
      const row = await table.get(ownerId, BALANCE_ROW);
      return row ? readBalance(row) : 0;
    },

    async ledger(ownerId, options = {}) {
      return (await ledgerPage(ownerId, options)).entries;
    },

    ledgerPage,
  };
}
