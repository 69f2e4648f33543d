import { z } from 'zod';
import type { OrgId, OwnerId } from '../ids.js';
import { parseWorkspaceKey, type Workspace, workspaceKey } from '../ids.js';
import type { ItemKind } from '../owner/keys.js';
import { CorruptRowError, definedProps } from '../owner/rows.js';
import type { EntityProps, StoredEntity } from '../store.js';

/**
 * Index rows in the `directory` table: one point read from an id to where it belongs.
 * - `org:<orgId>` / `ref`: the organization's creator (its billing owner), name, creation time.
 * - `workflow:<id>` / `ref`, `credential:<id>` / `ref`: where the item lives (workspace and owner, so a
 *   workflow subject needs this one read before the owner's snapshot), and any move or delete in progress.
 */

export const REF = 'ref';
export const orgIndexPartition = (orgId: OrgId) => `org:${orgId}`;
export const itemIndexPartition = (kind: ItemKind, id: string) => `${kind}:${id}`;

const orgIndexSchema = z.object({ ownerId: z.string(), name: z.string(), createdAt: z.string() });
export type OrgIndex = z.infer<typeof orgIndexSchema> & { readonly etag: string };

export function parseOrgIndex(row: StoredEntity): OrgIndex {
  const parsed = orgIndexSchema.safeParse(row.props);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  return { ...parsed.data, etag: row.etag };
}

/** Where an item lives, claimed under generation `claim` in its owner's partition. */
export interface ItemLocation {
  readonly workspace: Workspace;
  /** `undefined` only for rows written before the index carried owners: resolve from the workspace. */
  readonly ownerId: OwnerId | undefined;
  readonly claim: number;
  readonly nodeCount: number;
}

/**
 * An item's index. Every write of an intent (a create, a move, a delete) takes the next generation;
 * a claim in an owner's partition carries the generation of the intent that made it, so an intent that
 * was rolled back can never claim later (see `items.ts`).
 */
export interface ItemIndex {
  readonly gen: number;
  readonly createdAt: string;
  /** Where the item is, once a create or move has finished. */
  readonly committed: ItemLocation | undefined;
  /** A create or move in progress, claimed (or about to be) under `gen`. */
  readonly pending: ItemLocation | undefined;
  /** A DELETE in progress: the item reads as absent; the next PUT or DELETE finishes it. */
  readonly deleting: boolean;
  readonly etag: string;
}

const count = z.number().int().nonnegative();
const itemIndexSchema = z.object({
  gen: count.optional(),
  createdAt: z.string().optional(),
  ws: z.string().optional(),
  owner: z.string().optional(),
  claim: count.optional(),
  nodeCount: count.optional(),
  toWs: z.string().optional(),
  toOwner: z.string().optional(),
  toNodeCount: count.optional(),
  deleting: z.boolean().optional(),
  /** Rows from before generations: `{ workspace, createdAt, nodeCount }`, committed, claim 0. */
  workspace: z.string().optional(),
});

export function parseItemIndex(row: StoredEntity): ItemIndex {
  const parsed = itemIndexSchema.safeParse(row.props);
  if (!parsed.success) throw new CorruptRowError(row.partitionKey, row.rowKey, z.prettifyError(parsed.error));
  const data = parsed.data;
  const workspaceOf = (key: string) => {
    try {
      return parseWorkspaceKey(key);
    } catch (error) {
      throw new CorruptRowError(row.partitionKey, row.rowKey, String(error));
    }
  };
  const ws = data.ws ?? data.workspace;
  const committed: ItemLocation | undefined =
    ws === undefined
      ? undefined
      : {
          workspace: workspaceOf(ws),
          ownerId: data.owner,
          claim: data.claim ?? 0,
          nodeCount: data.nodeCount ?? 0,
        };
  const pending: ItemLocation | undefined =
    data.toWs === undefined
      ? undefined
      : {
          workspace: workspaceOf(data.toWs),
          ownerId: data.toOwner,
          claim: data.gen ?? 0,
          nodeCount: data.toNodeCount ?? 0,
        };
  return {
    gen: data.gen ?? 0,
    createdAt: data.createdAt ?? '',
    committed,
    pending,
    deleting: data.deleting === true,
    etag: row.etag,
  };
}

/** The props of an item index (an index without a location and not deleting is a tombstone). */
export function itemIndexProps(index: Omit<ItemIndex, 'etag'>): EntityProps {
  const { committed, pending } = index;
  return definedProps({
    gen: index.gen,
    createdAt: index.createdAt,
    ws: committed ? workspaceKey(committed.workspace) : undefined,
    owner: committed?.ownerId,
    claim: committed?.claim,
    nodeCount: committed?.nodeCount,
    toWs: pending ? workspaceKey(pending.workspace) : undefined,
    toOwner: pending?.ownerId,
    toNodeCount: pending?.nodeCount,
    deleting: index.deleting ? true : undefined,
  });
}

/** An index that names nowhere: deleted (its generation kept, so a late claim of an old intent fails). */
export const isTombstone = (index: ItemIndex) =>
  index.committed === undefined && index.pending === undefined && !index.deleting;
