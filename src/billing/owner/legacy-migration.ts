import { z } from 'zod';
import { withinLockLimits } from '../access/allocation.js';
import { capabilitiesOf } from '../access/capabilities.js';
import { computeLockSet, emptyLockSet, type KeepPreferences, type OwnedItem } from '../access/locks.js';
import type { Catalog } from '../catalog.js';
import { isMeterName } from '../catalog.js';
import type { Clock } from '../clock.js';
import {
  itemIndexProps,
  orgIndexPartition,
  parseItemIndex,
  parseOrgIndex,
  REF,
} from '../directory/index-rows.js';
import { type OwnerId, parseWorkspaceKey } from '../ids.js';
import { boundsFromKey } from '../periods.js';
import {
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  EtagMismatchError,
  type StoredEntity,
  TransactionFailedError,
} from '../store.js';
import { parseSubscriptionRow } from '../subscription.js';
import {
  ALLOCATION_ROW,
  BALANCE_ROW,
  counterRowKey,
  itemRowKey,
  KEEP_ROW,
  META_ROW,
  memberRowKey,
  orgRowKey,
  SEATS_ROW,
  SUBSCRIPTION_ROW,
  seatRowKey,
} from './keys.js';
import { CorruptRowError, chunkedJson, type OrgRow } from './rows.js';
import type { OwnerMigration, OwnerSnapshot } from './snapshot.js';

/**
 * Brings owners from the first layout (docs/decisions/0002) to the snapshot layout (0004):
 * - `directory` table, partition `owner:<ownerId>`: `org|<orgId>`, `member|<orgId>|<userId>`,
 *   `workflow|<workspace>|<id>`, `credential|<workspace>|<id>` (counted by scanning them);
 * - `billing` table, partition `<ownerId>`: `subscription`, `credits|balance`, `locks|keep`,
 *   `usage|<meter>|<periodKey>`.
 * The item index rows (`workflow:<id>`, `credential:<id>`) keep their old shape and are read as is.
 *
 * An owner is migrated on first read (lazily), or by the sweep (`run`, the `ownerMigration` timer),
 * whichever comes first. Every new row is created only if absent, and `s|o|meta` is created last, so
 * concurrent migrations of one owner write the same rows and never overwrite a change made after one
 * of them finished; a crash half-way is finished by the next read or sweep. When the sweep has seen
 * every owner it records that (`schema`/`owners`), and reads stop looking for the old layout.
 */
export interface LegacyMigration extends OwnerMigration {
  /** Whether the sweep has brought every owner over. */
  complete(): Promise<boolean>;
  /** Brings one owner over if it has rows in the old layout; what it did. */
  migrateOwner(ownerId: OwnerId): Promise<'migrated' | 'already' | 'nothing'>;
  /** The sweep: every owner with old rows, then their old rows removed, then the completion mark. */
  run(options?: { readonly budgetMs?: number }): Promise<MigrationReport>;
}

export interface MigrationReport {
  readonly owners: number;
  readonly migrated: number;
  /** Old rows removed (of owners migrated now or before). */
  readonly removed: number;
  readonly complete: boolean;
  readonly elapsedMs: number;
}

export const SCHEMA_PARTITION = 'schema';
export const OWNERS_ROW = 'owners';
/** The layout the owners are in once migrated. */
export const OWNER_SCHEMA_VERSION = 2;

const LEGACY_DIRECTORY_PREFIX = 'owner:';
const LEGACY_BILLING_ROWS = ['subscription', 'credits|balance', 'locks|keep'] as const;
const LEGACY_USAGE_PREFIX = 'usage|';

const legacyOrg = z.object({ name: z.string(), createdAt: z.string() });
const legacyMember = z.object({ role: z.string(), addedAt: z.string() });
const legacyItem = z.object({ createdAt: z.string() }).loose();
const legacyKeep = z.object({ workflows: z.string(), credentials: z.string() });
const idList = z.array(z.string());

function parseLegacy<T>(schema: z.ZodType<T>, row: StoredEntity): T {
  const parsed = schema.safeParse(row.props);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return parsed.data;
}

/** How often a process asks again whether the sweep has finished, while it has not. */
const RECHECK_MS = 60_000;

export function createLegacyMigration(deps: {
  readonly billingTable: EntityTable;
  readonly directoryTable: EntityTable;
  readonly catalog: Catalog;
  readonly clock: Clock;
}): LegacyMigration {
  const { billingTable, directoryTable, catalog, clock } = deps;
  let completeAt: number | undefined; // once complete, forever
  let checkedAt = Number.NEGATIVE_INFINITY;
  /** Owners seen with nothing in the old layout (only matters until the sweep completes). */
  const clean = new Set<OwnerId>();

  async function complete(): Promise<boolean> {
    if (completeAt !== undefined) return true;
    const now = Date.now();
    if (now - checkedAt < RECHECK_MS) return false;
    checkedAt = now;
    const row = await billingTable.get(SCHEMA_PARTITION, OWNERS_ROW);
    if (row && Number(row.props.version) >= OWNER_SCHEMA_VERSION) completeAt = now;
    return completeAt !== undefined;
  }

  async function readLegacy(ownerId: OwnerId) {
    const [directoryRows, usageRows, ...singles] = await Promise.all([
      directoryTable.list(`${LEGACY_DIRECTORY_PREFIX}${ownerId}`),
      billingTable.list(ownerId, { prefix: LEGACY_USAGE_PREFIX }),
      ...LEGACY_BILLING_ROWS.map((key) => billingTable.get(ownerId, key)),
    ]);
    const [subscription, balance, keep] = singles;
    return { directoryRows, usageRows, subscription, balance, keep };
  }

  /** The new rows of one owner, from its old ones. @throws CorruptRowError */
  function translate(ownerId: OwnerId, legacy: Awaited<ReturnType<typeof readLegacy>>) {
    const now = clock.now();
    const rows = new Map<string, EntityProps>();
    const orgs = new Map<string, OrgRow>();
    const items: { workflows: OwnedItem[]; credentials: OwnedItem[] } = { workflows: [], credentials: [] };
    const seats = new Map<string, number>();
    for (const row of legacy.directoryRows) {
      const [kind, second] = row.rowKey.split('|');
      if (kind === 'org' && second !== undefined) {
        const org = parseLegacy(legacyOrg, row);
        orgs.set(second, { ...org, workflows: 0, credentials: 0, members: 0, ...orgs.get(second) });
      }
    }
    const orgRow = (orgId: string) => {
      const org = orgs.get(orgId);
      if (!org)
        throw new CorruptRowError(
          `${LEGACY_DIRECTORY_PREFIX}${ownerId}`,
          `org|${orgId}`,
          'missing for a row of it',
        );
      return org;
    };
    for (const row of legacy.directoryRows) {
      const [kind, second, third] = row.rowKey.split('|');
      if (second === undefined) continue;
      if ((kind === 'workflow' || kind === 'credential') && third !== undefined) {
        const { createdAt } = parseLegacy(legacyItem, row);
        let workspace: OwnedItem['workspace'];
        try {
          workspace = parseWorkspaceKey(second);
        } catch (error) {
          throw new CorruptRowError(row.partitionKey, row.rowKey, String(error));
        }
        // An item of an organization that is gone was left behind by an interrupted delete: not counted.
        if (workspace.kind === 'org' && !orgs.has(workspace.orgId)) continue;
        rows.set(itemRowKey(kind, workspace, third), { createdAt, gen: 0 });
        (kind === 'workflow' ? items.workflows : items.credentials).push({ id: third, workspace, createdAt });
        if (workspace.kind === 'org') {
          const org = orgRow(workspace.orgId);
          orgs.set(
            workspace.orgId,
            kind === 'workflow'
              ? { ...org, workflows: org.workflows + 1 }
              : { ...org, credentials: org.credentials + 1 },
          );
        }
      } else if (kind === 'member' && third !== undefined && orgs.has(second)) {
        const member = parseLegacy(legacyMember, row);
        rows.set(memberRowKey(second, third), member);
        const org = orgRow(second);
        orgs.set(second, { ...org, members: org.members + 1 });
        if (third !== ownerId) seats.set(third, (seats.get(third) ?? 0) + 1);
      }
    }
    for (const [userId, count] of seats) rows.set(seatRowKey(userId), { orgs: count });

    const snapshotRows = new Map<string, EntityProps>();
    const subscription = legacy.subscription
      ? parseSubscriptionRow(ownerId, legacy.subscription.props)
      : undefined;
    if (legacy.subscription) snapshotRows.set(SUBSCRIPTION_ROW, legacy.subscription.props);
    if (legacy.balance) snapshotRows.set(BALANCE_ROW, legacy.balance.props);
    let keep: KeepPreferences = { workflows: [], credentials: [] };
    if (legacy.keep) {
      const stored = parseLegacy(legacyKeep, legacy.keep);
      try {
        keep = {
          workflows: idList.parse(JSON.parse(stored.workflows)),
          credentials: idList.parse(JSON.parse(stored.credentials)),
        };
      } catch (error) {
        throw new CorruptRowError(legacy.keep.partitionKey, legacy.keep.rowKey, String(error));
      }
      snapshotRows.set(KEEP_ROW, {
        ...chunkedJson('workflows', keep.workflows),
        ...chunkedJson('credentials', keep.credentials),
      });
    }
    for (const row of legacy.usageRows) {
      const [, meter, periodKey] = row.rowKey.split('|');
      if (meter === undefined || periodKey === undefined || !isMeterName(meter)) continue;
      const start =
        typeof row.props.periodStart === 'string'
          ? new Date(row.props.periodStart)
          : boundsFromKey(periodKey)?.start;
      if (start === undefined || Number.isNaN(start.getTime()))
        throw new CorruptRowError(row.partitionKey, row.rowKey, 'no period start');
      snapshotRows.set(counterRowKey(meter, { key: periodKey, start }), { ...row.props, meter, periodKey });
    }
    for (const [orgId, org] of orgs) snapshotRows.set(orgRowKey(orgId), org);
    const limits = capabilitiesOf(ownerId, subscription, catalog, now).limits;
    const counts = { workflows: items.workflows.length, credentials: items.credentials.length };
    const locks = withinLockLimits({ ...counts, orgs: [...orgs.values()].map((o) => o.workflows) }, limits)
      ? emptyLockSet(limits)
      : computeLockSet(items, limits, keep);
    snapshotRows.set(ALLOCATION_ROW, { ...counts, ...chunkedJson('locks', locks) });
    if (seats.size > 0) snapshotRows.set(SEATS_ROW, { seats: seats.size });
    return { rows, snapshotRows, meta: { schema: OWNER_SCHEMA_VERSION, migratedAt: now.toISOString() } };
  }

  /** Creates each row unless it exists: never overwrites what a migration or a change wrote first. */
  async function createAbsent(ownerId: OwnerId, rows: ReadonlyMap<string, EntityProps>): Promise<void> {
    const entries = [...rows];
    for (let i = 0; i < entries.length; i += 100) {
      const chunk = entries.slice(i, i + 100);
      try {
        await billingTable.transact(
          ownerId,
          chunk.map(([rowKey, props]) => ({ kind: 'create', rowKey, props })),
        );
      } catch (error) {
        if (!(error instanceof TransactionFailedError) || error.reason !== 'exists') throw error;
        // Someone migrated part of this already: one at a time, keeping what is there.
        await Promise.all(
          chunk.map(async ([rowKey, props]) => {
            try {
              await billingTable.create(ownerId, rowKey, props);
            } catch (inner) {
              if (!(inner instanceof EntityExistsError)) throw inner;
            }
          }),
        );
      }
    }
  }

  async function migrateOwner(ownerId: OwnerId): Promise<'migrated' | 'already' | 'nothing'> {
    const legacy = await readLegacy(ownerId);
    const none =
      legacy.directoryRows.length === 0 &&
      legacy.usageRows.length === 0 &&
      !legacy.subscription &&
      !legacy.balance &&
      !legacy.keep;
    if (none) return 'nothing';
    if (await billingTable.get(ownerId, META_ROW)) return 'already';
    const translated = translate(ownerId, legacy);
    // Items and memberships first, then the snapshot's rows that count them, then the mark.
    await createAbsent(ownerId, translated.rows);
    await createAbsent(ownerId, translated.snapshotRows);
    await createAbsent(ownerId, new Map([[META_ROW, translated.meta]]));
    return 'migrated';
  }

  async function removeLegacy(ownerId: OwnerId): Promise<number> {
    const legacy = await readLegacy(ownerId);
    let removed = 0;
    const directoryPartition = `${LEGACY_DIRECTORY_PREFIX}${ownerId}`;
    await Promise.all(
      legacy.directoryRows.map(async (row) => {
        if (await directoryTable.delete(directoryPartition, row.rowKey)) removed++;
      }),
    );
    const billingRows = [...legacy.usageRows, legacy.subscription, legacy.balance, legacy.keep].filter(
      (row): row is StoredEntity => row !== undefined,
    );
    await Promise.all(
      billingRows.map(async (row) => {
        if (await billingTable.delete(ownerId, row.rowKey)) removed++;
      }),
    );
    return removed;
  }

  /**
   * Item index rows of the first layout name a workspace but not its owner: written again with the
   * owner (claim 0, as the migrated item rows), so a workflow subject needs no organization look-up.
   * Conditional on the row read: one changed meanwhile was rewritten by the new code already.
   */
  async function upgradeItemIndexes(started: number, budgetMs: number): Promise<boolean> {
    for (const kind of ['workflow', 'credential'] as const) {
      for await (const row of directoryTable.scan({ partitionPrefix: `${kind}:`, rowKeys: [REF] })) {
        if (Date.now() - started >= budgetMs) return false;
        if (row.props.gen !== undefined) continue;
        const index = parseItemIndex(row);
        const at = index.committed;
        if (!at) continue;
        const ownerId =
          at.workspace.kind === 'personal'
            ? at.workspace.userId
            : (
                await directoryTable
                  .get(orgIndexPartition(at.workspace.orgId), REF)
                  .then((r) => (r ? parseOrgIndex(r) : undefined))
              )?.ownerId;
        if (ownerId === undefined) continue; // its organization is gone: the next PUT or DELETE settles it
        try {
          await directoryTable.update(
            row.partitionKey,
            REF,
            itemIndexProps({ ...index, committed: { ...at, ownerId } }),
            row.etag,
          );
        } catch (error) {
          if (!(error instanceof EtagMismatchError) && !(error instanceof EntityNotFoundError)) throw error;
        }
      }
    }
    return true;
  }

  async function legacyOwners(): Promise<Set<OwnerId>> {
    const owners = new Set<OwnerId>();
    for await (const row of directoryTable.scan({ partitionPrefix: LEGACY_DIRECTORY_PREFIX, select: [] })) {
      owners.add(row.partitionKey.slice(LEGACY_DIRECTORY_PREFIX.length));
    }
    const rowKeys = [...LEGACY_BILLING_ROWS, { from: LEGACY_USAGE_PREFIX, to: 'usage}' }];
    for await (const row of billingTable.scan({ rowKeys, select: [] })) {
      // Owner ids never hold `:` or `|`; other partitions (indexes, rollover) do.
      if (!/[:|]/.test(row.partitionKey)) owners.add(row.partitionKey);
    }
    return owners;
  }

  return {
    complete,
    migrateOwner,

    async migrateIfNeeded(ownerId: OwnerId, snapshot: OwnerSnapshot) {
      if (snapshot.migrated || clean.has(ownerId) || (await complete())) return false;
      const outcome = await migrateOwner(ownerId);
      if (outcome === 'nothing') {
        clean.add(ownerId);
        if (clean.size > 100_000) clean.clear();
      }
      // Migrated now or by someone meanwhile: either way the snapshot read before is stale.
      return true;
    },

    async run(options = {}) {
      const started = Date.now();
      const budgetMs = options.budgetMs ?? 240_000;
      if (await complete()) return { owners: 0, migrated: 0, removed: 0, complete: true, elapsedMs: 0 };
      const owners = [...(await legacyOwners())];
      let migrated = 0;
      let removed = 0;
      let finished = true;
      for (const ownerId of owners) {
        if (Date.now() - started >= budgetMs) {
          finished = false;
          break;
        }
        if ((await migrateOwner(ownerId)) === 'migrated') migrated++;
        removed += await removeLegacy(ownerId);
      }
      if (finished) finished = await upgradeItemIndexes(started, budgetMs);
      if (finished) {
        await billingTable.upsert(SCHEMA_PARTITION, OWNERS_ROW, {
          version: OWNER_SCHEMA_VERSION,
          completedAt: clock.now().toISOString(),
        });
        completeAt = Date.now();
      }
      return {
        owners: owners.length,
        migrated,
        removed,
        complete: finished,
        elapsedMs: Date.now() - started,
      };
    },
  };
}
