import { type AllocationChange, allocationAfter } from '../access/allocation.js';
import { capabilitiesFor, type Decision, decideCreate } from '../access/decide.js';
import { wouldDenyAction } from '../access/would-deny.js';
import type { OwnerId, Workspace } from '../ids.js';
import { listOwnedItems } from '../owner/items.js';
import { type ItemKind, itemRowKey, orgRowKey } from '../owner/keys.js';
import { type ItemRow, itemRowSchema, type OrgRow, parseRow } from '../owner/rows.js';
import { type OwnerSnapshot, withVersion } from '../owner/snapshot.js';
import { answer, commit, write } from '../storage/commit.js';
import type { EntityProps, StoredEntity, TransactionAction } from '../store.js';
import type { DirectoryContext } from './context.js';

/**
 * The owner-partition half of the item protocol (`items.ts` has the index half). An item is counted
 * by its row `item|<kind>|<workspace>|<id>` existing, in the same transaction as the counts that count
 * it and the lock set. Each row carries the generation of the index intent that claimed it:
 * - a claim creates the row (or revives a tombstone of an older generation); a tombstone of its own
 *   generation or newer means the intent was rolled back meanwhile, and the claim must not happen;
 * - a release deletes a live row of its generation or older, or leaves a tombstone where there is no
 *   row, so that a claim of a rolled-back intent arriving late finds it and stops.
 * Both are idempotent and safe to repeat after any crash.
 */

export type ClaimOutcome =
  | { readonly kind: 'claimed'; readonly releasedOld: boolean }
  /** The row was released at this generation or later: the intent was rolled back; start again. */
  | { readonly kind: 'cancelled' }
  | { readonly kind: 'denied'; readonly decision: Decision }
  /** The organization is not (or no longer) in the owner's snapshot. */
  | { readonly kind: 'org_gone' };

export interface ClaimRequest {
  readonly kind: ItemKind;
  readonly id: string;
  readonly ownerId: OwnerId;
  readonly workspace: Workspace;
  readonly gen: number;
  readonly createdAt: string;
  readonly nodeCount: number;
  readonly enforce: boolean;
  /** The item's current place in the same owner's partition: released in the same transaction. */
  readonly releasing?: Workspace | undefined;
  /** For the would-be denial records. */
  readonly subject: unknown;
}

const parseItem = (row: StoredEntity | undefined): ItemRow | undefined =>
  row === undefined ? undefined : parseRow(itemRowSchema, row);

function orgCountAction(
  snapshot: OwnerSnapshot,
  workspace: Workspace,
  kind: ItemKind,
  delta: number,
): TransactionAction | undefined {
  if (workspace.kind !== 'org') return undefined;
  const org = snapshot.orgs.get(workspace.orgId);
  if (!org) return undefined;
  const field = kind === 'workflow' ? 'workflows' : 'credentials';
  const row: OrgRow = { ...org.row, [field]: Math.max(0, org.row[field] + delta) };
  return { kind: 'update', rowKey: orgRowKey(workspace.orgId), props: row, etag: org.etag };
}

/** Rewrites an organization row unchanged: a write whose only effect is a new ETag, to order two changes. */
function touchOrg(snapshot: OwnerSnapshot, workspace: Workspace): TransactionAction | undefined {
  if (workspace.kind !== 'org') return undefined;
  const org = snapshot.orgs.get(workspace.orgId);
  return org
    ? { kind: 'update', rowKey: orgRowKey(workspace.orgId), props: org.row, etag: org.etag }
    : undefined;
}

const present = <T>(values: ReadonlyArray<T | undefined>): T[] =>
  values.filter((v): v is T => v !== undefined);

export function claimItem(ctx: DirectoryContext, request: ClaimRequest): Promise<ClaimOutcome> {
  const { kind, id, ownerId, workspace, gen } = request;
  const table = ctx.ownerTable;
  const key = itemRowKey(kind, workspace, id);
  return ctx.lanes.run(ownerId, () =>
    commit<ClaimOutcome>(
      table,
      ownerId,
      async () => {
        const oldKey = request.releasing ? itemRowKey(kind, request.releasing, id) : undefined;
        const [snapshot, row, oldRow] = await Promise.all([
          ctx.owners.read(ownerId),
          table.get(ownerId, key),
          oldKey === undefined ? Promise.resolve(undefined) : table.get(ownerId, oldKey),
        ]);
        const current = parseItem(row);
        const old = parseItem(oldRow);
        if (current && current.dead !== true) return answer({ kind: 'claimed', releasedOld: false });
        if (current && current.gen >= gen) return answer({ kind: 'cancelled' });
        if (workspace.kind === 'org') {
          const org = snapshot.orgs.get(workspace.orgId);
          if (!org || org.row.deleting === true) return answer({ kind: 'org_gone' });
        }
        const releasing = request.releasing !== undefined && old !== undefined && old.dead !== true;
        const verdict = decideCreate(snapshot, ctx.catalog, await ctx.enforcement.current(), {
          kind,
          workspace,
          nodeCount: request.nodeCount,
          withinOwner: releasing,
          enforce: request.enforce,
        });
        if (!verdict.allowed) return answer({ kind: 'denied', decision: verdict.decision });

        const at = ctx.clock.now().toISOString();
        const props: EntityProps = { createdAt: request.createdAt, gen };
        const item = { id, workspace, createdAt: request.createdAt };
        const change: AllocationChange = {
          [kind === 'workflow' ? 'workflows' : 'credentials']: releasing ? 0 : 1,
          orgWorkflows: new Map(
            kind === 'workflow'
              ? present([
                  workspace.kind === 'org' ? ([workspace.orgId, 1] as const) : undefined,
                  releasing && request.releasing?.kind === 'org'
                    ? ([request.releasing.orgId, -1] as const)
                    : undefined,
                ])
              : [],
          ),
          added: { kind, item },
          ...(releasing && request.releasing
            ? { removed: { kind, item: { id, workspace: request.releasing } } }
            : {}),
        };
        const caps = capabilitiesFor(snapshot, ctx.catalog);
        const allocation = await allocationAfter(snapshot, caps.limits, change, () =>
          listOwnedItems(table, ownerId),
        );
        const actions: TransactionAction[] = [
          current === undefined
            ? { kind: 'create', rowKey: key, props }
            : { kind: 'update', rowKey: key, props, etag: row?.etag ?? '' },
          allocation.action,
          ...present([orgCountAction(snapshot, workspace, kind, 1)]),
          ...verdict.wouldDeny.map((wd) => wouldDenyAction(wd, { subject: request.subject, at })),
        ];
        if (releasing && request.releasing && oldKey !== undefined) {
          actions.push({ kind: 'delete', rowKey: oldKey });
          const fromOrg = orgCountAction(snapshot, request.releasing, kind, -1);
          if (fromOrg) actions.push(fromOrg);
        }
        return write(withVersion(snapshot, actions), () => ({ kind: 'claimed', releasedOld: releasing }));
      },
      { what: `claiming ${kind} ${id} for ${ownerId}` },
    ),
  );
}

export interface ReleaseRequest {
  readonly kind: ItemKind;
  readonly id: string;
  readonly ownerId: OwnerId;
  readonly workspace: Workspace;
  /** Releases a claim of this generation or older. */
  readonly gen: number;
}

/** Gives an item's place up: uncounted, or a tombstone where no claim has landed yet. */
export function releaseItem(ctx: DirectoryContext, request: ReleaseRequest): Promise<void> {
  const { kind, id, ownerId, workspace, gen } = request;
  const table = ctx.ownerTable;
  const key = itemRowKey(kind, workspace, id);
  return ctx.lanes.run(ownerId, () =>
    commit<void>(
      table,
      ownerId,
      async () => {
        const [snapshot, row] = await Promise.all([ctx.owners.read(ownerId), table.get(ownerId, key)]);
        const current = parseItem(row);
        const org = workspace.kind === 'org' ? snapshot.orgs.get(workspace.orgId) : undefined;
        if (current === undefined) {
          // Nothing landed here: leave a tombstone so a late claim of this generation stops. An organization
          // that is gone accepts no claims, so it needs none.
          if (workspace.kind === 'org' && org === undefined) return answer(undefined);
          return write(
            withVersion(
              snapshot,
              present([
                { kind: 'create', rowKey: key, props: { createdAt: '', gen, dead: true } },
                touchOrg(snapshot, workspace),
              ]),
            ),
            () => undefined,
          );
        }
        if (current.dead === true) {
          if (current.gen >= gen) return answer(undefined);
          return write(
            [{ kind: 'update', rowKey: key, props: { ...current, gen }, etag: row?.etag ?? '' }],
            () => undefined,
          );
        }
        if (current.gen > gen) return answer(undefined); // a newer claim owns the place
        const caps = capabilitiesFor(snapshot, ctx.catalog);
        const allocation = await allocationAfter(
          snapshot,
          caps.limits,
          {
            [kind === 'workflow' ? 'workflows' : 'credentials']: -1,
            orgWorkflows: new Map(
              kind === 'workflow' && workspace.kind === 'org' ? [[workspace.orgId, -1]] : [],
            ),
            removed: { kind, item: { id, workspace } },
          },
          () => listOwnedItems(table, ownerId),
        );
        return write(
          withVersion(
            snapshot,
            present([
              { kind: 'delete', rowKey: key },
              allocation.action,
              orgCountAction(snapshot, workspace, kind, -1),
            ]),
          ),
          () => undefined,
        );
      },
      { what: `releasing ${kind} ${id} for ${ownerId}` },
    ),
  );
}
