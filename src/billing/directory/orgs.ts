import { allocationAfter } from '../access/allocation.js';
import { capabilitiesFor } from '../access/decide.js';
import { conflict } from '../errors.js';
import type { OrgId, OwnerId, UserId } from '../ids.js';
import { listItemsUnder, listOwnedItems } from '../owner/items.js';
import { itemWorkspacePrefix, memberPrefix, orgRowKey } from '../owner/keys.js';
import type { OrgRow } from '../owner/rows.js';
import { withVersion } from '../owner/snapshot.js';
import { answer, commit, RETRY, untilSettled, write } from '../storage/commit.js';
import { type EntityProps, TransactionFailedError } from '../store.js';
import { type DirectoryContext, readOrgIndex } from './context.js';
import { type OrgIndex, orgIndexPartition, REF } from './index-rows.js';
import type { Items } from './items.js';
import type { Members } from './members.js';

/**
 * Organizations: the index `org:<orgId>` names the creator (the billing owner, which never changes);
 * the owner's partition holds `s|o|org|<orgId>` with the organization's counts. An organization exists
 * once both do; the index is written first (it claims the id, so two creators cannot both win) and
 * removed last (so a crashed DELETE is found and finished by the next PUT or DELETE).
 */

export interface OrgInput {
  readonly creatorId: UserId;
  readonly name?: string | undefined;
}

export interface OrgRecord {
  readonly orgId: OrgId;
  readonly ownerId: OwnerId;
  readonly name: string;
  readonly createdAt: string;
}

export type OrgPutOutcome = {
  readonly kind: 'created' | 'updated' | 'unchanged';
  readonly record: OrgRecord;
};

/** Item rows released per transaction in a DELETE (each transaction also writes the counts). */
const RELEASE_BATCH = 90;

async function writeOrgIndex(
  ctx: DirectoryContext,
  orgId: OrgId,
  read: OrgIndex | undefined,
  props: EntityProps,
): Promise<boolean> {
  try {
    await ctx.indexTable.transact(orgIndexPartition(orgId), [
      read === undefined
        ? { kind: 'create', rowKey: REF, props }
        : { kind: 'update', rowKey: REF, props, etag: read.etag },
    ]);
    return true;
  } catch (error) {
    if (error instanceof TransactionFailedError) return false;
    throw error;
  }
}

export function createOrgs(
  ctx: DirectoryContext,
  parts: { readonly workflows: Items; readonly credentials: Items; readonly members: Members },
) {
  const table = ctx.ownerTable;

  async function getOrg(orgId: OrgId): Promise<OrgRecord | undefined> {
    const index = await readOrgIndex(ctx, orgId);
    return index && { orgId, ownerId: index.ownerId, name: index.name, createdAt: index.createdAt };
  }

  /** Marks the organization's row deleting; `false` when the row is gone already. */
  function markDeleting(orgId: OrgId, ownerId: OwnerId): Promise<boolean> {
    return ctx.lanes.run(ownerId, () =>
      commit(
        table,
        ownerId,
        async () => {
          const snapshot = await ctx.owners.read(ownerId);
          const org = snapshot.orgs.get(orgId);
          if (!org) return answer(false);
          if (org.row.deleting === true) return answer(true);
          const row: OrgRow = { ...org.row, deleting: true };
          return write(
            withVersion(snapshot, [{ kind: 'update', rowKey: orgRowKey(orgId), props: row, etag: org.etag }]),
            () => true,
          );
        },
        { what: `marking ${orgId} deleting` },
      ),
    );
  }

  /** Removes up to a batch of the organization's item rows (live and tombstones); how many it removed. */
  function releaseItemsBatch(orgId: OrgId, ownerId: OwnerId): Promise<number> {
    const workspace = { kind: 'org', orgId } as const;
    return ctx.lanes.run(ownerId, () =>
      commit(
        table,
        ownerId,
        async () => {
          const [snapshot, workflows, credentials] = await Promise.all([
            ctx.owners.read(ownerId),
            listItemsUnder(table, ownerId, itemWorkspacePrefix('workflow', workspace)),
            listItemsUnder(table, ownerId, itemWorkspacePrefix('credential', workspace)),
          ]);
          const rows = [...workflows, ...credentials].slice(0, RELEASE_BATCH);
          if (rows.length === 0) return answer(0);
          const live = rows.filter((item) => item.row.dead !== true);
          const liveWorkflows = live.filter((item) => item.kind === 'workflow').length;
          const liveCredentials = live.length - liveWorkflows;
          const caps = capabilitiesFor(snapshot, ctx.catalog);
          const allocation = await allocationAfter(
            snapshot,
            caps.limits,
            {
              workflows: -liveWorkflows,
              credentials: -liveCredentials,
              orgWorkflows: new Map([[orgId, -liveWorkflows]]),
              removedMany: new Set(live.map((item) => `${item.kind}:${item.id}`)),
            },
            () => listOwnedItems(table, ownerId),
          );
          const org = snapshot.orgs.get(orgId);
          return write(
            withVersion(snapshot, [
              ...rows.map((item) => ({
                kind: 'delete' as const,
                rowKey: `${itemWorkspacePrefix(item.kind, workspace)}${item.id}`,
              })),
              allocation.action,
              ...(org
                ? [
                    {
                      kind: 'update' as const,
                      rowKey: orgRowKey(orgId),
                      props: {
                        ...org.row,
                        workflows: Math.max(0, org.row.workflows - liveWorkflows),
                        credentials: Math.max(0, org.row.credentials - liveCredentials),
                      },
                      etag: org.etag,
                    },
                  ]
                : []),
            ]),
            () => rows.length,
          );
        },
        { what: `releasing the items of ${orgId}` },
      ),
    );
  }

  /** Deletes the organization's row once nothing is left under it; `false` when something still is. */
  function removeOrgRow(orgId: OrgId, ownerId: OwnerId): Promise<boolean> {
    const workspace = { kind: 'org', orgId } as const;
    return ctx.lanes.run(ownerId, () =>
      commit(
        table,
        ownerId,
        async () => {
          const [snapshot, workflows, credentials, members] = await Promise.all([
            ctx.owners.read(ownerId),
            table.list(ownerId, { prefix: itemWorkspacePrefix('workflow', workspace), select: [] }),
            table.list(ownerId, { prefix: itemWorkspacePrefix('credential', workspace), select: [] }),
            table.list(ownerId, { prefix: memberPrefix(orgId), select: [] }),
          ]);
          const org = snapshot.orgs.get(orgId);
          if (!org) return answer(true);
          if (workflows.length + credentials.length + members.length > 0) return answer(false);
          // Conditional on the snapshot's version: a release racing this (a tombstone under the org, which
          // touches the org's row) goes first, and this round looks again.
          return write(withVersion(snapshot, [{ kind: 'delete', rowKey: orgRowKey(orgId) }]), () => true);
        },
        { what: `removing ${orgId}` },
      ),
    );
  }

  /** Everything a DELETE does in the owner's partition, from the deletion mark on; safe to repeat. */
  async function dismantle(orgId: OrgId, ownerId: OwnerId): Promise<void> {
    const workspace = { kind: 'org', orgId } as const;
    if (!(await markDeleting(orgId, ownerId))) return;
    // Nothing new can be claimed into an organization marked deleting, so rounds only repeat while a
    // release racing this one leaves a tombstone under it: a few at most.
    await untilSettled(table.name, { what: `DELETE organization ${orgId}`, maxAttempts: 8 }, async () => {
      // Index rows first: each item's index stops naming the organization, then its rows go.
      for (const kind of ['workflow', 'credential'] as const) {
        const items = kind === 'workflow' ? parts.workflows : parts.credentials;
        const rows = await listItemsUnder(table, ownerId, itemWorkspacePrefix(kind, workspace));
        for (const item of rows) {
          if (item.row.dead === true) continue;
          const marked = await items.detachFromOrg(item.id, orgId);
          if (marked) await items.bury(item.id, marked);
        }
      }
      while ((await releaseItemsBatch(orgId, ownerId)) > 0) {}
      while ((await parts.members.removeBatch(orgId, ownerId)) > 0) {}
      return (await removeOrgRow(orgId, ownerId)) ? undefined : RETRY;
    });
  }

  async function putOrg(orgId: OrgId, input: OrgInput): Promise<OrgPutOutcome> {
    return untilSettled(
      ctx.indexTable.name,
      { what: `PUT organization ${orgId}`, maxAttempts: 8 },
      async () => {
        let index = await readOrgIndex(ctx, orgId);
        if (index && index.ownerId !== input.creatorId) {
          // Moving an organization to another payer re-homes its workflows, credentials and seats between
          // two billing accounts: an ownership transfer with its own flow, not a directory update.
          throw conflict(
            'org_creator_immutable',
            `Organization ${orgId} was created by ${index.ownerId}; its creator cannot change to ${input.creatorId}.`,
          );
        }
        const createdIndex = index === undefined;
        if (!index) {
          const props = {
            ownerId: input.creatorId,
            name: input.name ?? orgId,
            createdAt: ctx.clock.now().toISOString(),
          };
          if (!(await writeOrgIndex(ctx, orgId, undefined, props))) return RETRY;
          index = await readOrgIndex(ctx, orgId);
          if (!index) return RETRY;
        }
        const ownerId = index.ownerId;
        const name = input.name ?? index.name;
        const outcome = await ctx.lanes.run(ownerId, () =>
          commit<'created' | 'renamed' | 'unchanged' | 'deleting'>(
            table,
            ownerId,
            async () => {
              const snapshot = await ctx.owners.read(ownerId);
              const org = snapshot.orgs.get(orgId);
              if (org?.row.deleting === true) return answer('deleting');
              if (!org) {
                const row: OrgRow = {
                  name,
                  createdAt: index.createdAt,
                  workflows: 0,
                  credentials: 0,
                  members: 0,
                };
                return write(
                  withVersion(snapshot, [{ kind: 'create', rowKey: orgRowKey(orgId), props: row }]),
                  () => 'created',
                );
              }
              if (org.row.name === name) return answer('unchanged');
              return write(
                withVersion(snapshot, [
                  { kind: 'update', rowKey: orgRowKey(orgId), props: { ...org.row, name }, etag: org.etag },
                ]),
                () => 'renamed',
              );
            },
            { what: `PUT organization ${orgId}` },
          ),
        );
        if (outcome === 'deleting') {
          // A DELETE crashed or is running: finish it, then create the organization afresh.
          await removeOrg(orgId);
          return RETRY;
        }
        const record = { orgId, ownerId, name, createdAt: index.createdAt };
        if (
          index.name !== name &&
          !(await writeOrgIndex(ctx, orgId, index, { ownerId, name, createdAt: index.createdAt }))
        )
          return RETRY;
        const kind =
          createdIndex || outcome === 'created'
            ? 'created'
            : outcome === 'renamed' || index.name !== name
              ? 'updated'
              : 'unchanged';
        return { kind, record };
      },
    );
  }

  async function removeOrg(orgId: OrgId): Promise<{ readonly kind: 'deleted' | 'absent' }> {
    return untilSettled(
      ctx.indexTable.name,
      { what: `DELETE organization ${orgId}`, maxAttempts: 8 },
      async () => {
        const index = await readOrgIndex(ctx, orgId);
        if (!index) return { kind: 'absent' } as const;
        await dismantle(orgId, index.ownerId);
        try {
          await ctx.indexTable.transact(orgIndexPartition(orgId), [{ kind: 'delete', rowKey: REF }]);
        } catch (error) {
          if (!(error instanceof TransactionFailedError)) throw error;
        }
        ctx.orgOwners.forget(orgId);
        return { kind: 'deleted' } as const;
      },
    );
  }

  return { getOrg, putOrg, removeOrg };
}
