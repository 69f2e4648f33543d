import { z } from 'zod';
import { auditAction, type RevertHandler, type RevertibleKind } from '../audit/entry.js';
import { validationError } from '../errors.js';
import type { OwnerId } from '../ids.js';
import type { OwnerAccess } from '../owner/owner-access.js';
import { type OpsSetting, type OwnerSnapshot, withVersion } from '../owner/snapshot.js';
import { answer, commit, write } from '../storage/commit.js';
import type { EntityTable, TransactionAction } from '../store.js';
import { type AdminChange, adminAudit, UnrevertibleBeforeError } from './admin-change.js';

/**
 * An operator's setting for one owner, kept as one row of the owner's snapshot (overrides `s|o|ovr`,
 * enforcement `s|o|enf`): every decision reads it in the snapshot's one range query, and every change
 * writes the row, its audit row and the version bump (plus whatever else must move with it, such as
 * the lock set) in one transaction through `commit()`. PUT and DELETE are idempotent: a change to the
 * value already stored writes nothing (so a retried request after a lost answer audits once).
 */

export interface SettingView<T> {
  readonly ownerId: OwnerId;
  readonly value: T;
  readonly updatedAt: string;
  readonly updatedBy: string;
  /** The owner's snapshot version after the change (or as read). */
  readonly version: number;
}

export type SetOutcome<T> = SettingView<T> & { readonly outcome: 'created' | 'replaced' | 'unchanged' };

export interface OwnerSettings<T> {
  get(ownerId: OwnerId): Promise<SettingView<T> | undefined>;
  set(ownerId: OwnerId, value: T, change: AdminChange): Promise<SetOutcome<T>>;
  /** `true` when there was a setting to remove. */
  clear(ownerId: OwnerId, change: AdminChange): Promise<boolean>;
  readonly revertHandler: RevertHandler;
}

export interface OwnerSettingSpec<T> {
  /** For messages and audit kinds: `override` -> `override_set`, `override_removed`. */
  readonly name: string;
  readonly rowKey: string;
  /** The row's JSON property. */
  readonly property: string;
  readonly schema: z.ZodType<T>;
  readonly revertible: RevertibleKind;
  readonly stored: (snapshot: OwnerSnapshot) => OpsSetting<T> | undefined;
  /** A value that cannot be applied at `now` (an expiry in the past): the reason, for a 400. */
  readonly refuse?: (value: T, now: Date) => string | undefined;
  /** A stored `before` that no longer means anything at `now` (expired), applied by a revert as "none". */
  readonly lapsed?: (value: T, now: Date) => boolean;
  /** Rows that must change with the setting (the lock set, for overrides), on the snapshot read. */
  readonly alongside?: (
    snapshot: OwnerSnapshot,
    next: T | undefined,
  ) => Promise<readonly TransactionAction[]> | readonly TransactionAction[];
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function createOwnerSettings<T>(
  spec: OwnerSettingSpec<T>,
  deps: {
    readonly table: EntityTable;
    readonly owners: Pick<OwnerAccess, 'read'>;
    readonly now: () => Date;
  },
): OwnerSettings<T> {
  const { table, owners, now } = deps;

  /** The rows of one change decided from `snapshot`: the setting, what moves with it, its audit row, the version. */
  async function changeActions(
    snapshot: OwnerSnapshot,
    before: OpsSetting<T> | undefined,
    next: T | undefined,
    admin: AdminChange,
    at: string,
  ): Promise<TransactionAction[]> {
    const props = { [spec.property]: JSON.stringify(next), updatedAt: at, updatedBy: admin.actor };
    // A delete carries no ETag (Table Storage takes none in a batch): the version bump is its condition.
    const row: TransactionAction =
      next === undefined
        ? { kind: 'delete', rowKey: spec.rowKey }
        : before === undefined
          ? { kind: 'create', rowKey: spec.rowKey, props }
          : { kind: 'update', rowKey: spec.rowKey, props, etag: before.etag };
    const audit = auditAction(
      {
        ...adminAudit(admin, at),
        kind: next === undefined ? `${spec.name}_removed` : `${spec.name}_set`,
        before: before?.value ?? null,
        after: next ?? null,
        revertible: spec.revertible,
        details: { ownerId: snapshot.ownerId },
      },
      admin.requestId,
    );
    const extra = spec.alongside ? await spec.alongside(snapshot, next) : [];
    return withVersion(snapshot, [row, ...extra, audit]);
  }

  function set(ownerId: OwnerId, value: T, admin: AdminChange): Promise<SetOutcome<T>> {
    const refused = spec.refuse?.(value, now());
    if (refused !== undefined) return Promise.reject(validationError(`invalid_${spec.name}`, refused));
    return commit<SetOutcome<T>>(
      table,
      ownerId,
      async () => {
        const snapshot = await owners.read(ownerId);
        const before = spec.stored(snapshot);
        if (before !== undefined && same(before.value, value))
          return answer({
            ownerId,
            value: before.value,
            updatedAt: before.updatedAt,
            updatedBy: before.updatedBy,
            version: snapshot.version.value,
            outcome: 'unchanged',
          });
        const at = now().toISOString();
        return write(await changeActions(snapshot, before, value, admin, at), () => ({
          ownerId,
          value,
          updatedAt: at,
          updatedBy: admin.actor,
          version: snapshot.version.value + 1,
          outcome: before === undefined ? 'created' : 'replaced',
        }));
      },
      { what: `setting the ${spec.name} of ${ownerId}` },
    );
  }

  function clear(ownerId: OwnerId, admin: AdminChange): Promise<boolean> {
    return commit<boolean>(
      table,
      ownerId,
      async () => {
        const snapshot = await owners.read(ownerId);
        const before = spec.stored(snapshot);
        if (before === undefined) return answer(false);
        const at = now().toISOString();
        return write(await changeActions(snapshot, before, undefined, admin, at), () => true);
      },
      { what: `removing the ${spec.name} of ${ownerId}` },
    );
  }

  return {
    async get(ownerId) {
      const snapshot = await owners.read(ownerId);
      const stored = spec.stored(snapshot);
      return stored === undefined
        ? undefined
        : {
            ownerId,
            value: stored.value,
            updatedAt: stored.updatedAt,
            updatedBy: stored.updatedBy,
            version: snapshot.version.value,
          };
    },
    set,
    clear,
    revertHandler: {
      kind: spec.revertible,
      async revert({ ownerId, before, actor, reason, revertOf, requestId }) {
        if (ownerId === undefined)
          throw new UnrevertibleBeforeError(spec.name, 'the audit row names no owner');
        const parsed = spec.schema.nullable().safeParse(before);
        if (!parsed.success)
          throw new UnrevertibleBeforeError(spec.name, z.prettifyError(parsed.error), parsed.error);
        const admin = { actor, reason, revertOf, requestId };
        const value = parsed.data;
        // `null` (nothing before), or a value that has lapsed since (an expired override): back to none.
        if (value === null || spec.lapsed?.(value, now())) await clear(ownerId, admin);
        else await set(ownerId, value, admin);
      },
    },
  };
}
