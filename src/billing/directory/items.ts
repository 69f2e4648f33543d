import { decideCreate } from '../access/decide.js';
import { wouldDenyAction } from '../access/would-deny.js';
import { limitReached } from '../errors.js';
import type { OwnerId, Workspace } from '../ids.js';
import type { ItemKind } from '../owner/keys.js';
import { RETRY, untilSettled } from '../storage/commit.js';
import { TransactionFailedError } from '../store.js';
import {
  type DirectoryContext,
  orgNotFound,
  ownerOfOrg,
  ownerOfWorkspace,
  sameWorkspace,
} from './context.js';
import {
  type ItemIndex,
  type ItemLocation,
  isTombstone,
  itemIndexPartition,
  itemIndexProps,
  parseItemIndex,
  REF,
} from './index-rows.js';
import { claimItem, releaseItem } from './item-claims.js';

/**
 * Workflows and credentials: an item lives in a workspace, is found by id through its index row
 * (`workflow:<id>` / `credential:<id>` in the `directory` table) and is counted in its owner's partition
 * (`item-claims.ts`). The two partitions cannot share a transaction, so every change is an intent
 * written to the index first, then carried out in the owner's partition, then recorded as done:
 *
 *   create / move:  index `pending` (next generation) -> claim at the target -> release the old place
 *                   -> index `committed` at the target
 *   delete:         index `deleting` (next generation) -> release every place it names -> tombstone
 *
 * Every row that is counted is named by its index (as committed or pending) until it is released, so a
 * crash at any point leaves nothing counted that the next PUT or DELETE of that id cannot find: they
 * roll a pending change forward (same target) or back (another target), and finish a delete. A claim
 * that was rolled back can never land later (generations, `item-claims.ts`).
 */

export interface ItemInput {
  readonly workspace: Workspace;
  readonly nodeCount: number;
  /** `false`: record without enforcing limits (a backfill). */
  readonly enforce: boolean;
}

export interface ItemRecord {
  readonly id: string;
  readonly workspace: Workspace;
  readonly ownerId: OwnerId;
  readonly nodeCount: number;
  readonly createdAt: string;
}

export type ItemPutOutcome = {
  readonly kind: 'created' | 'updated' | 'unchanged';
  readonly record: ItemRecord;
};

const ATTEMPTS = { maxAttempts: 12 } as const;

async function readIndex(ctx: DirectoryContext, kind: ItemKind, id: string): Promise<ItemIndex | undefined> {
  const row = await ctx.indexTable.get(itemIndexPartition(kind, id), REF);
  return row ? parseItemIndex(row) : undefined;
}

/** Writes the index on condition that it is still what was read; `undefined` when it changed meanwhile. */
async function writeIndex(
  ctx: DirectoryContext,
  kind: ItemKind,
  id: string,
  read: ItemIndex | undefined,
  next: Omit<ItemIndex, 'etag'>,
): Promise<ItemIndex | undefined> {
  const props = itemIndexProps(next);
  try {
    const { etags } = await ctx.indexTable.transact(itemIndexPartition(kind, id), [
      read === undefined
        ? { kind: 'create', rowKey: REF, props }
        : { kind: 'update', rowKey: REF, props, etag: read.etag },
    ]);
    return { ...next, etag: etags.get(REF) ?? '' };
  } catch (error) {
    if (error instanceof TransactionFailedError) return undefined;
    throw error;
  }
}

/** The owner of a location: recorded, or (rows from before owners were recorded) from its workspace. */
async function ownerAt(ctx: DirectoryContext, location: ItemLocation): Promise<OwnerId | undefined> {
  if (location.ownerId !== undefined) return location.ownerId;
  return location.workspace.kind === 'personal'
    ? location.workspace.userId
    : ownerOfOrg(ctx, location.workspace.orgId);
}

async function release(
  ctx: DirectoryContext,
  kind: ItemKind,
  id: string,
  location: ItemLocation,
  gen: number,
) {
  const ownerId = await ownerAt(ctx, location);
  // An organization that no longer exists took its items with it.
  if (ownerId !== undefined)
    await releaseItem(ctx, { kind, id, ownerId, workspace: location.workspace, gen });
}

/** Undoes a pending change: its target released, the index back to where the item was. */
async function rollBack(ctx: DirectoryContext, kind: ItemKind, id: string, index: ItemIndex): Promise<void> {
  if (index.pending) await release(ctx, kind, id, index.pending, index.gen);
  // If the index changed meanwhile, whoever changed it carries on from there.
  await writeIndex(ctx, kind, id, index, { ...index, pending: undefined });
}

/** Finishes a delete: marks it, releases every place the index names, leaves a tombstone. */
async function finishDelete(
  ctx: DirectoryContext,
  kind: ItemKind,
  id: string,
  read: ItemIndex,
): Promise<boolean> {
  const marked = read.deleting
    ? read
    : await writeIndex(ctx, kind, id, read, { ...read, gen: read.gen + 1, deleting: true });
  if (!marked) return false;
  if (marked.committed) await release(ctx, kind, id, marked.committed, marked.gen);
  if (marked.pending) await release(ctx, kind, id, marked.pending, marked.gen);
  const tomb = await writeIndex(ctx, kind, id, marked, {
    gen: marked.gen,
    createdAt: marked.createdAt,
    committed: undefined,
    pending: undefined,
    deleting: false,
  });
  return tomb !== undefined;
}

const recordOf = (id: string, location: ItemLocation, ownerId: OwnerId, createdAt: string): ItemRecord => ({
  id,
  workspace: location.workspace,
  ownerId,
  nodeCount: location.nodeCount,
  createdAt,
});

export function createItems(ctx: DirectoryContext, kind: ItemKind) {
  const subjectOf = (id: string) => ({ [kind === 'workflow' ? 'workflowId' : 'credentialId']: id });

  /** Carries a pending change out: claim at the target, release the old place, record it as done. */
  async function complete(
    id: string,
    index: ItemIndex,
    target: ItemLocation & { readonly ownerId: OwnerId },
    input: ItemInput,
  ): Promise<ItemPutOutcome | typeof RETRY> {
    const old = index.committed;
    const oldOwner = old ? await ownerAt(ctx, old) : undefined;
    const sameOwner = old !== undefined && oldOwner === target.ownerId;
    const claimed = await claimItem(ctx, {
      kind,
      id,
      ownerId: target.ownerId,
      workspace: target.workspace,
      gen: index.gen,
      createdAt: index.createdAt,
      nodeCount: input.nodeCount,
      enforce: input.enforce,
      releasing: sameOwner ? old.workspace : undefined,
      subject: subjectOf(id),
    });
    if (claimed.kind === 'cancelled') return RETRY;
    if (claimed.kind === 'denied' || claimed.kind === 'org_gone') {
      await rollBack(ctx, kind, id, index);
      if (claimed.kind === 'denied') throw limitReached(claimed.decision);
      throw orgNotFound(target.workspace.kind === 'org' ? target.workspace.orgId : '');
    }
    if (old && !(sameOwner && claimed.releasedOld)) await release(ctx, kind, id, old, index.gen);
    const location: ItemLocation = { ...target, claim: index.gen, nodeCount: input.nodeCount };
    const done = await writeIndex(ctx, kind, id, index, {
      gen: index.gen,
      createdAt: index.createdAt,
      committed: location,
      pending: undefined,
      deleting: false,
    });
    // Changed meanwhile: whoever changed it saw our intent and rolled it forward or back; look again.
    if (!done) return RETRY;
    return {
      kind: old ? 'updated' : 'created',
      record: recordOf(id, location, target.ownerId, index.createdAt),
    };
  }

  async function put(id: string, input: ItemInput): Promise<ItemPutOutcome> {
    const targetOwner = await ownerOfWorkspace(ctx, input.workspace);
    return untilSettled(ctx.indexTable.name, { what: `PUT ${kind} ${id}`, ...ATTEMPTS }, async () => {
      const index = await readIndex(ctx, kind, id);
      if (index?.deleting) {
        await finishDelete(ctx, kind, id, index);
        return RETRY;
      }
      const target = {
        workspace: input.workspace,
        ownerId: targetOwner,
        claim: 0,
        nodeCount: input.nodeCount,
      };
      if (index?.pending) {
        // A change in progress (or crashed): the same one is carried on, another is undone first. (The
        // same workspace under another owner is another change: its organization was created again.)
        const pendingOwner = index.pending.ownerId;
        if (
          sameWorkspace(index.pending.workspace, input.workspace) &&
          (pendingOwner === undefined || pendingOwner === targetOwner)
        )
          return complete(id, index, target, input);
        await rollBack(ctx, kind, id, index);
        return RETRY;
      }
      const committed = index?.committed;
      if (committed && index && sameWorkspace(committed.workspace, input.workspace)) {
        const ownerId = (await ownerAt(ctx, committed)) ?? targetOwner;
        if (committed.nodeCount === input.nodeCount)
          return { kind: 'unchanged', record: recordOf(id, committed, ownerId, index.createdAt) };
        const verdict = decideCreate(
          await ctx.owners.read(ownerId),
          ctx.catalog,
          await ctx.enforcement.current(),
          {
            kind,
            workspace: input.workspace,
            nodeCount: input.nodeCount,
            previousNodeCount: committed.nodeCount,
            nodeCountOnly: true,
            enforce: input.enforce,
          },
        );
        if (!verdict.allowed) throw limitReached(verdict.decision);
        const location = { ...committed, ownerId, nodeCount: input.nodeCount };
        const written = await writeIndex(ctx, kind, id, index, { ...index, committed: location });
        if (!written) return RETRY;
        if (verdict.wouldDeny.length > 0) {
          // Allowed under monitor (or a grace period): the would-be denial is recorded for the owner.
          const at = ctx.clock.now().toISOString();
          await ctx.ownerTable.transact(
            ownerId,
            verdict.wouldDeny.map((wd) => wouldDenyAction(wd, { subject: subjectOf(id), at })),
          );
        }
        return { kind: 'updated', record: recordOf(id, location, ownerId, index.createdAt) };
      }
      // A create or a move. Refuse early, writing nothing, when the target is already full.
      const oldOwner = committed ? await ownerAt(ctx, committed) : undefined;
      const verdict = decideCreate(
        await ctx.owners.read(targetOwner),
        ctx.catalog,
        await ctx.enforcement.current(),
        {
          kind,
          workspace: input.workspace,
          nodeCount: input.nodeCount,
          withinOwner: committed !== undefined && oldOwner === targetOwner,
          enforce: input.enforce,
        },
      );
      if (!verdict.allowed) throw limitReached(verdict.decision);
      const createdAt =
        index && !isTombstone(index) && index.createdAt !== ''
          ? index.createdAt
          : ctx.clock.now().toISOString();
      const gen = (index?.gen ?? 0) + 1;
      const intent = await writeIndex(ctx, kind, id, index, {
        gen,
        createdAt,
        committed,
        pending: { ...target, claim: gen },
        deleting: false,
      });
      if (!intent) return RETRY;
      return complete(id, intent, target, input);
    });
  }

  async function remove(id: string): Promise<{ readonly kind: 'deleted' | 'absent' }> {
    return untilSettled(ctx.indexTable.name, { what: `DELETE ${kind} ${id}`, ...ATTEMPTS }, async () => {
      const index = await readIndex(ctx, kind, id);
      if (!index || isTombstone(index)) return { kind: 'absent' } as const;
      return (await finishDelete(ctx, kind, id, index)) ? ({ kind: 'deleted' } as const) : RETRY;
    });
  }

  /** Where the item is, once created; `undefined` while absent, deleted or being deleted. */
  async function get(id: string): Promise<ItemRecord | undefined> {
    const index = await readIndex(ctx, kind, id);
    if (!index || index.deleting || !index.committed) return undefined;
    const ownerId = await ownerAt(ctx, index.committed);
    return ownerId === undefined ? undefined : recordOf(id, index.committed, ownerId, index.createdAt);
  }

  /**
   * For a DELETE of the organization the item is in: marks the item's index deleting when it names
   * that organization (so a concurrent PUT finishes the delete instead of racing it) and releases
   * what it names elsewhere. Returns the marked index to tombstone once the organization's rows are gone.
   */
  async function detachFromOrg(id: string, orgId: string): Promise<ItemIndex | undefined> {
    const inOrg = (location: ItemLocation | undefined) =>
      location?.workspace.kind === 'org' && location.workspace.orgId === orgId;
    return untilSettled(ctx.indexTable.name, { what: `detaching ${kind} ${id}`, ...ATTEMPTS }, async () => {
      const index = await readIndex(ctx, kind, id);
      if (!index || (!inOrg(index.committed) && !inOrg(index.pending))) return undefined;
      const marked = index.deleting
        ? index
        : await writeIndex(ctx, kind, id, index, { ...index, gen: index.gen + 1, deleting: true });
      if (!marked) return RETRY;
      for (const location of [marked.committed, marked.pending]) {
        if (location && !inOrg(location)) await release(ctx, kind, id, location, marked.gen);
      }
      return marked;
    });
  }

  /** After the organization's rows are gone: the marked index becomes a tombstone. */
  async function bury(id: string, marked: ItemIndex): Promise<void> {
    await writeIndex(ctx, kind, id, marked, {
      gen: marked.gen,
      createdAt: marked.createdAt,
      committed: undefined,
      pending: undefined,
      deleting: false,
    });
  }

  return { put, remove, get, detachFromOrg, bury };
}

export type Items = ReturnType<typeof createItems>;
