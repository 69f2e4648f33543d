import { z } from 'zod';
import type { KeepPreferences, LockSet } from '../access/locks.js';
import { type OwnerOverrides, ownerOverridesSchema } from '../access/overrides.js';
import { METERS, type MeterName } from '../catalog.js';
import type { Clock } from '../clock.js';
import { type ContractState, contractStateSchema } from '../contracts/model.js';
import { type OwnerEnforcement, ownerEnforcementSchema } from '../enforcement.js';
import { rememberBasis } from '../feed/basis.js';
import type { OrgId, OwnerId } from '../ids.js';
import type { UsagePeriod } from '../periods.js';
import type { EntityTable, StoredEntity, TransactionAction } from '../store.js';
import { parseSubscriptionRow, type SubscriptionState } from '../subscription.js';
import { EMPTY_COUNTER, parseUsageCounter, type UsageCounter, usageRowKey } from '../usage.js';
import {
  ALLOCATION_ROW,
  BALANCE_ROW,
  CONTRACT_ROW,
  COUNTER_PREFIX,
  ENFORCEMENT_ROW,
  KEEP_ROW,
  META_ROW,
  ORG_PREFIX,
  OVERRIDES_ROW,
  SEAT_CAP_ROW,
  SEATS_ROW,
  SNAPSHOT_PREFIX,
  SUBSCRIPTION_ROW,
  snapshotRange,
  VERSION_ROW,
} from './keys.js';
import {
  balanceSchema,
  CorruptRowError,
  definedProps,
  enforcementRowSchema,
  metaSchema,
  type OrgRow,
  orgRowSchema,
  overridesRowSchema,
  parseRow,
  readChunkedJson,
  seatCapSchema,
  seatsSchema,
  versionSchema,
} from './rows.js';

/**
 * Everything a decision needs about one billing owner, from one range query in the owner's partition
 * (`keys.ts`). Each part carries the ETag it was read at (`undefined`: the row does not exist yet), so a
 * change decided from it can be written on condition that nothing changed meanwhile.
 */
export interface OwnerSnapshot {
  readonly ownerId: OwnerId;
  /** The instant the snapshot was read for; decisions about time use it. */
  readonly readAt: Date;
  /** The owner's rows were migrated from the old layout (`s|o|meta` exists). */
  readonly migrated: boolean;
  /**
   * Bumped in the same transaction as every change to a row of the snapshot (`versionAction`), so a
   * write conditional on its ETag commits only if nothing in the snapshot changed since it was read.
   */
  readonly version: {
    readonly value: number;
    readonly etag: string | undefined;
    /**
     * The owner's creation instant, carried by the version row from its first write on. When the row does
     * not exist yet: the read instant if the owner has no state at all (this write creates it), else
     * `undefined` (state from before the instant was recorded: never invented later).
     */
    readonly createdAt: string | undefined;
  };
  readonly subscription: { readonly state: SubscriptionState; readonly etag: string } | undefined;
  /** Per-owner overrides of limits and flags (ops), whether or not they have expired. */
  readonly overrides: OpsSetting<OwnerOverrides> | undefined;
  /** Per-owner enforcement modes (ops). */
  readonly enforcement: OpsSetting<OwnerEnforcement> | undefined;
  /** The enterprise contract, active or not (`contracts/model.ts`); `undefined` without one. */
  readonly contract: { readonly state: ContractState; readonly etag: string } | undefined;
  readonly balance: { readonly credits: number; readonly etag: string | undefined };
  readonly allocation: Allocation;
  /** People across the owner's organizations other than the owner. */
  readonly otherPeople: { readonly count: number; readonly etag: string | undefined };
  /** The owner's cap on billable seats (`PUT /api/billing/seats`); `null`: no cap. */
  readonly seatCap: { readonly maxSeats: number | null; readonly etag: string | undefined };
  readonly orgs: ReadonlyMap<OrgId, { readonly row: OrgRow; readonly etag: string }>;
  readonly keep: { readonly picks: KeepPreferences; readonly etag: string | undefined };
  /** Counters of the periods that may still be current, by row key. */
  readonly counters: ReadonlyMap<string, { readonly counter: UsageCounter; readonly etag: string }>;
  /**
   * The rows the snapshot was parsed from, by row key: what a change's "after" is computed from
   * (`snapshotAfter`), so the entitlement feed describes a change with the same parser and the same
   * decision functions as everything else. A snapshot derived without a read (metering's kept one)
   * keeps them in step (`rowsAfter`).
   */
  readonly rows: ReadonlyMap<string, StoredEntity>;
}

/** A setting an operator made for this owner, with who made it and the ETag it was read at. */
export interface OpsSetting<T> {
  readonly value: T;
  readonly updatedAt: string;
  readonly updatedBy: string;
  readonly etag: string;
}

export interface Allocation {
  readonly workflows: number;
  readonly credentials: number;
  /** `undefined` until first computed (then the owner has never been over a limit). */
  readonly locks: LockSet | undefined;
  readonly etag: string | undefined;
}

/** Distinct people across the owner's organizations, the owner included: what `seats` limits. */
export const seatsInUse = (snapshot: OwnerSnapshot) => 1 + snapshot.otherPeople.count;

/** An organization of this owner that is not being deleted. */
export function liveOrg(snapshot: OwnerSnapshot, orgId: OrgId) {
  const org = snapshot.orgs.get(orgId);
  return org && org.row.deleting !== true ? org : undefined;
}

const keptScopeSchema = z.object({
  kept: z.array(z.string()),
  boundary: z.object({ createdAt: z.string(), id: z.string() }).nullable(),
});
export const lockSetSchema = z.object({
  basis: z.string(),
  orgs: z.record(z.string(), keptScopeSchema),
  lockedInOrgs: z.number().int().nonnegative(),
  workflows: keptScopeSchema.nullable(),
  credentials: keptScopeSchema.nullable(),
});

const allocationSchema = z.object({
  workflows: z.number().int().nonnegative(),
  credentials: z.number().int().nonnegative(),
});

const idList = z.array(z.string());

function parseJsonProp<T>(row: StoredEntity, name: string, schema: z.ZodType<T>): T | undefined {
  let value: unknown;
  try {
    value = readChunkedJson(row.props, name);
  } catch (error) {
    throw new CorruptRowError(row.partitionKey, row.rowKey, `${name} is not JSON (${String(error)})`);
  }
  if (value === undefined) return undefined;
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return parsed.data;
}

function parseJsonRow<T>(row: StoredEntity, json: string, schema: z.ZodType<T>): T {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch (error) {
    throw new CorruptRowError(row.partitionKey, row.rowKey, `not JSON (${String(error)})`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return parsed.data;
}

/**
 * When the owner came to be, for enforcement cohorts: the `createdAt` of its version row (written with its
 * first state row), or `'unknown'` for an owner whose state predates that record (treated as older than
 * any instant: see `CohortRule`).
 */
export function ownerCreatedAt(snapshot: Pick<OwnerSnapshot, 'version'>): Date | 'unknown' {
  const at = snapshot.version.createdAt;
  return at === undefined ? 'unknown' : new Date(at);
}

/** Turns the rows of the snapshot range into a snapshot. @throws CorruptRowError */
export function parseSnapshot(ownerId: OwnerId, rows: readonly StoredEntity[], readAt: Date): OwnerSnapshot {
  let subscription: OwnerSnapshot['subscription'];
  let contract: OwnerSnapshot['contract'];
  let balance: OwnerSnapshot['balance'] = { credits: 0, etag: undefined };
  let allocation: Allocation = { workflows: 0, credentials: 0, locks: undefined, etag: undefined };
  let otherPeople: OwnerSnapshot['otherPeople'] = { count: 0, etag: undefined };
  let seatCap: OwnerSnapshot['seatCap'] = { maxSeats: null, etag: undefined };
  let keep: OwnerSnapshot['keep'] = { picks: { workflows: [], credentials: [] }, etag: undefined };
  let migrated = false;
  let version: OwnerSnapshot['version'] | undefined;
  let overrides: OwnerSnapshot['overrides'];
  let enforcement: OwnerSnapshot['enforcement'];
  const orgs = new Map<OrgId, { row: OrgRow; etag: string }>();
  const counters = new Map<string, { counter: UsageCounter; etag: string }>();
  for (const row of rows) {
    const key = row.rowKey;
    if (key.startsWith(COUNTER_PREFIX))
      counters.set(key, { counter: parseUsageCounter(row), etag: row.etag });
    else if (key.startsWith(ORG_PREFIX))
      orgs.set(key.slice(ORG_PREFIX.length), { row: parseRow(orgRowSchema, row), etag: row.etag });
    else if (key === SUBSCRIPTION_ROW)
      subscription = { state: parseSubscriptionRow(ownerId, row.props), etag: row.etag };
    else if (key === CONTRACT_ROW) {
      const state = parseJsonProp(row, 'contract', contractStateSchema);
      if (state === undefined) throw new CorruptRowError(row.partitionKey, row.rowKey, 'contract is missing');
      contract = { state, etag: row.etag };
    } else if (key === BALANCE_ROW)
      balance = { credits: parseRow(balanceSchema, row).balance, etag: row.etag };
    else if (key === ALLOCATION_ROW) {
      const counts = parseRow(allocationSchema, row);
      allocation = { ...counts, locks: parseJsonProp(row, 'locks', lockSetSchema), etag: row.etag };
    } else if (key === SEATS_ROW) otherPeople = { count: parseRow(seatsSchema, row).seats, etag: row.etag };
    else if (key === SEAT_CAP_ROW)
      seatCap = { maxSeats: parseRow(seatCapSchema, row).maxSeats, etag: row.etag };
    else if (key === KEEP_ROW)
      keep = {
        picks: {
          workflows: parseJsonProp(row, 'workflows', idList) ?? [],
          credentials: parseJsonProp(row, 'credentials', idList) ?? [],
        },
        etag: row.etag,
      };
    else if (key === VERSION_ROW) {
      const parsed = parseRow(versionSchema, row);
      version = { value: parsed.version, etag: row.etag, createdAt: parsed.createdAt };
    } else if (key === OVERRIDES_ROW) {
      const parsed = parseRow(overridesRowSchema, row);
      overrides = {
        value: parseJsonRow(row, parsed.overrides, ownerOverridesSchema),
        updatedAt: parsed.updatedAt,
        updatedBy: parsed.updatedBy,
        etag: row.etag,
      };
    } else if (key === ENFORCEMENT_ROW) {
      const parsed = parseRow(enforcementRowSchema, row);
      enforcement = {
        value: parseJsonRow(row, parsed.enforcement, ownerEnforcementSchema),
        updatedAt: parsed.updatedAt,
        updatedBy: parsed.updatedBy,
        etag: row.etag,
      };
    } else if (key === META_ROW) {
      parseRow(metaSchema, row);
      migrated = true;
    }
    // Other rows in the range are not read by decisions.
  }
  return {
    ownerId,
    readAt,
    migrated,
    // No rows at all: the owner is new, and the write that creates its version row records this instant.
    version: version ?? {
      value: 0,
      etag: undefined,
      createdAt: rows.length === 0 ? readAt.toISOString() : undefined,
    },
    subscription,
    overrides,
    enforcement,
    contract,
    balance,
    allocation,
    otherPeople,
    seatCap,
    orgs,
    keep,
    counters,
    rows: new Map(rows.map((row) => [row.rowKey, row])),
  };
}

/**
 * The snapshot's rows once `actions` are applied (creates, upserts and updates replace a row, deletes
 * remove it), with the new ETags where known. Rows outside the snapshot range are ignored.
 */
export function rowsAfter(
  snapshot: Pick<OwnerSnapshot, 'ownerId' | 'rows'>,
  actions: readonly TransactionAction[],
  etags: ReadonlyMap<string, string> = new Map(),
): Map<string, StoredEntity> {
  const rows = new Map(snapshot.rows);
  for (const action of actions) {
    if (!action.rowKey.startsWith(SNAPSHOT_PREFIX)) continue;
    if (action.kind === 'delete') rows.delete(action.rowKey);
    else
      rows.set(action.rowKey, {
        partitionKey: snapshot.ownerId,
        rowKey: action.rowKey,
        etag: etags.get(action.rowKey) ?? '',
        props: action.props,
      });
  }
  return rows;
}

/** The snapshot as it is once `actions` commit, read at the same instant (so time changes nothing). */
export function snapshotAfter(snapshot: OwnerSnapshot, actions: readonly TransactionAction[]): OwnerSnapshot {
  const rows = [...rowsAfter(snapshot, actions).values()].sort((a, b) =>
    a.rowKey < b.rowKey ? -1 : a.rowKey > b.rowKey ? 1 : 0,
  );
  return parseSnapshot(snapshot.ownerId, rows, snapshot.readAt);
}

/** A meter in one period, as the snapshot has it: what is used, and what is left. */
export interface MeterStatus {
  readonly meter: MeterName;
  readonly periodKey: string;
  readonly periodStart: string;
  /** Exclusive. */
  readonly periodEnd: string;
  readonly counterKey: string;
  readonly counterEtag: string | undefined;
  readonly counter: UsageCounter;
  readonly allowance: number | null;
  readonly allowanceRemaining: number | null;
  /** Credits that can cover this meter (0 for a meter that draws none). */
  readonly credits: number;
  /** What `enforce` would allow now: allowance left plus credits; `null` unlimited. */
  readonly remaining: number | null;
}

export function meterStatus(
  snapshot: OwnerSnapshot,
  meter: MeterName,
  period: UsagePeriod,
  allowance: number | null,
): MeterStatus {
  const counterKey = usageRowKey(meter, period);
  const stored = snapshot.counters.get(counterKey);
  const counter = stored?.counter ?? EMPTY_COUNTER;
  const allowanceRemaining = allowance === null ? null : Math.max(0, allowance - counter.allowanceUsed);
  // A balance below zero (credits clawed back after being spent) covers nothing; it is not a debt to the allowance.
  const credits = METERS[meter].drawsCredits ? Math.max(0, snapshot.balance.credits) : 0;
  return {
    meter,
    periodKey: period.key,
    // The window decided now, not the bounds the counter was written with: the same key can end elsewhere
    // once a late renewal replaced the window assumed before it (metering rewrites the row on next use).
    periodStart: period.start.toISOString(),
    periodEnd: period.end.toISOString(),
    counterKey,
    counterEtag: stored?.etag,
    counter,
    allowance,
    allowanceRemaining,
    credits,
    remaining: allowanceRemaining === null ? null : allowanceRemaining + credits,
  };
}

/**
 * The write that every transaction changing a row of the snapshot carries: the version, one higher,
 * on condition that it is still the one this snapshot was read at. `commit()` refuses a change to the
 * snapshot without it, so no writer can forget it.
 */
export function versionAction(snapshot: Pick<OwnerSnapshot, 'version'>): TransactionAction {
  // The version row is replaced on every bump: `createdAt` is carried over, never invented later.
  const props = definedProps({ version: snapshot.version.value + 1, createdAt: snapshot.version.createdAt });
  const action: TransactionAction =
    snapshot.version.etag === undefined
      ? { kind: 'create', rowKey: VERSION_ROW, props }
      : { kind: 'update', rowKey: VERSION_ROW, props, etag: snapshot.version.etag };
  // The entitlement feed describes the change from this snapshot (`feed/outbox.ts`).
  if (isFullSnapshot(snapshot)) rememberBasis(action, snapshot);
  return action;
}

const isFullSnapshot = (snapshot: Pick<OwnerSnapshot, 'version'>): snapshot is OwnerSnapshot =>
  'rows' in snapshot && 'ownerId' in snapshot && 'readAt' in snapshot;

/** `actions`, with the version bump when they change any row of the snapshot. */
export function withVersion(
  snapshot: Pick<OwnerSnapshot, 'version'>,
  actions: readonly TransactionAction[],
): TransactionAction[] {
  const touches = actions.some((a) => a.rowKey.startsWith(SNAPSHOT_PREFIX) && a.rowKey !== VERSION_ROW);
  return touches ? [...actions, versionAction(snapshot)] : [...actions];
}

/** Reads owner snapshots: one range query, with a first-read migration of owners in the old layout. */
export interface OwnerStore {
  read(ownerId: OwnerId): Promise<OwnerSnapshot>;
}

/** Brings an owner's rows from the old layout, once (`owner/legacy-migration.ts`). */
export interface OwnerMigration {
  /** True when it wrote rows, so the snapshot must be read again. */
  migrateIfNeeded(ownerId: OwnerId, snapshot: OwnerSnapshot): Promise<boolean>;
}

export function createOwnerStore(deps: {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  readonly clock: Clock;
  readonly migration?: OwnerMigration;
}): OwnerStore {
  const { table, clock, migration } = deps;
  const load = async (ownerId: OwnerId) => {
    const readAt = clock.now();
    return parseSnapshot(ownerId, await table.list(ownerId, { range: snapshotRange(readAt) }), readAt);
  };
  return {
    async read(ownerId) {
      const snapshot = await load(ownerId);
      if (migration && (await migration.migrateIfNeeded(ownerId, snapshot))) return load(ownerId);
      return snapshot;
    },
  };
}
