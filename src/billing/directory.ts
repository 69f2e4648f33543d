import { z } from 'zod';
import type { Clock } from './clock.js';
import { conflict, notFound } from './errors.js';
import {
  type CredentialId,
  type OrgId,
  type OwnerId,
  parseWorkspaceKey,
  type UserId,
  type WorkflowId,
  type Workspace,
  workspaceKey,
} from './ids.js';
import {
  ConcurrencyExhaustedError,
  EntityExistsError,
  EntityNotFoundError,
  type EntityTable,
  EtagMismatchError,
  type StoredEntity,
} from './store.js';

/**
 * The directory: organizations (with their creator, who is their billing owner), members, workflows
 * and credentials, as pushed by the platform. Every count a limit checks is derived from here.
 *
 * Layout in the `directory` table:
 * - `owner:<ownerId>` partition: everything the owner pays for, so each count is one range query:
 *   `org|<orgId>`, `member|<orgId>|<userId>`, `workflow|<workspace>|<id>`, `credential|<workspace>|<id>`
 *   where `<workspace>` is `org:<orgId>` or `user:<userId>`.
 * - `org:<orgId>` / `workflow:<id>` / `credential:<id>` partitions, row `ref`: point-read indexes from an
 *   id to its owner or workspace, used to resolve any subject to its billing owner.
 *
 * Writes that touch two partitions are ordered so that a crash at any step is repaired by repeating the
 * same idempotent PUT or DELETE, which is what the platform does on failure.
 */
export interface Directory {
  putOrg(orgId: OrgId, input: OrgInput): Promise<PutOutcome<OrgRecord>>;
  deleteOrg(orgId: OrgId): Promise<DeleteOutcome>;
  getOrg(orgId: OrgId): Promise<OrgRecord | undefined>;
  putMember(orgId: OrgId, userId: UserId, input: MemberInput): Promise<PutOutcome<MemberRecord>>;
  deleteMember(orgId: OrgId, userId: UserId): Promise<DeleteOutcome>;
  /** True for the organization's creator and for every member pushed by the platform. */
  isMember(orgId: OrgId, userId: UserId): Promise<boolean>;
  putWorkflow(workflowId: WorkflowId, input: WorkflowInput): Promise<PutOutcome<WorkflowRecord>>;
  deleteWorkflow(workflowId: WorkflowId): Promise<DeleteOutcome>;
  getWorkflow(workflowId: WorkflowId): Promise<WorkflowRecord | undefined>;
  putCredential(credentialId: CredentialId, input: CredentialInput): Promise<PutOutcome<CredentialRecord>>;
  deleteCredential(credentialId: CredentialId): Promise<DeleteOutcome>;
  /** The billing owner of a workspace. @throws not_found for an organization the directory does not know */
  ownerOfWorkspace(workspace: Workspace): Promise<OwnerId>;
  counts(ownerId: OwnerId): OwnerCounts;
  /** Every workflow and credential the owner pays for, with where it lives and when it was created. */
  items(ownerId: OwnerId): Promise<{ workflows: OwnedItem[]; credentials: OwnedItem[] }>;
}

/** Counts derived from the directory, each one range query over the owner's partition. */
export interface OwnerCounts {
  workflows(): Promise<number>;
  workflowsInOrg(orgId: OrgId): Promise<number>;
  credentials(): Promise<number>;
  /** Distinct people across the owner's organizations, the owner included. */
  seats(): Promise<number>;
  /** The owner's organizations with their workflow counts, oldest first. */
  orgs(): Promise<Array<{ orgId: OrgId; name: string; workflows: number }>>;
}

export interface OwnedItem {
  readonly id: string;
  readonly workspace: Workspace;
  readonly createdAt: string;
}

export interface OrgInput {
  readonly creatorId: UserId;
  readonly name?: string | undefined;
}
export interface MemberInput {
  readonly role?: string | undefined;
}
export interface WorkflowInput {
  readonly workspace: Workspace;
  readonly nodeCount: number;
}
export interface CredentialInput {
  readonly workspace: Workspace;
}

export interface OrgRecord {
  readonly orgId: OrgId;
  readonly ownerId: OwnerId;
  readonly name: string;
  readonly createdAt: string;
}
export interface MemberRecord {
  readonly orgId: OrgId;
  readonly userId: UserId;
  readonly role: string;
  readonly addedAt: string;
}
export interface WorkflowRecord {
  readonly workflowId: WorkflowId;
  readonly workspace: Workspace;
  readonly ownerId: OwnerId;
  readonly nodeCount: number;
  readonly createdAt: string;
}
export interface CredentialRecord {
  readonly credentialId: CredentialId;
  readonly workspace: Workspace;
  readonly ownerId: OwnerId;
  readonly createdAt: string;
}

export type PutOutcome<T> = { readonly kind: 'created' | 'updated' | 'unchanged'; readonly record: T };
export type DeleteOutcome = { readonly kind: 'deleted' | 'absent' };

const ownerPartition = (ownerId: OwnerId) => `owner:${ownerId}`;
const REF = 'ref';
/** Concurrent moves of one item are rare; a few rounds settle them. */
const MAX_INDEX_ATTEMPTS = 5;

const orgIndexSchema = z.object({ ownerId: z.string(), name: z.string(), createdAt: z.string() });
const memberRowSchema = z.object({ role: z.string(), addedAt: z.string() });
const itemIndexSchema = z.object({
  workspace: z.string(),
  createdAt: z.string(),
  nodeCount: z.number().optional(),
});

function parseRow<T>(schema: z.ZodType<T>, row: StoredEntity): T {
  const parsed = schema.safeParse(row.props);
  if (!parsed.success) {
    // Corrupt rows are a bug or a manual edit; say exactly which row so on-call can find it.
    throw new Error(
      `Corrupt directory row ${row.partitionKey}/${row.rowKey}: ${z.prettifyError(parsed.error)}`,
    );
  }
  return parsed.data;
}

export function createDirectory(deps: { readonly table: EntityTable; readonly clock: Clock }): Directory {
  const { table, clock } = deps;
  const now = () => clock.now().toISOString();

  async function getOrg(orgId: OrgId): Promise<OrgRecord | undefined> {
    const row = await table.get(`org:${orgId}`, REF);
    if (!row) return undefined;
    const data = parseRow(orgIndexSchema, row);
    return { orgId, ownerId: data.ownerId, name: data.name, createdAt: data.createdAt };
  }

  async function requireOrg(orgId: OrgId): Promise<OrgRecord> {
    const org = await getOrg(orgId);
    if (!org) {
      throw notFound(
        'org_not_found',
        `Organization ${orgId} is not in the directory; PUT it before its members or items.`,
      );
    }
    return org;
  }

  async function ownerOfWorkspace(workspace: Workspace): Promise<OwnerId> {
    return workspace.kind === 'personal' ? workspace.userId : (await requireOrg(workspace.orgId)).ownerId;
  }

  async function deletePrefix(partitionKey: string, prefix: string): Promise<StoredEntity[]> {
    const rows = await table.list(partitionKey, { prefix });
    await Promise.all(rows.map((row) => table.delete(partitionKey, row.rowKey)));
    return rows;
  }

  /**
   * Workflows and credentials share one shape: an item that lives in a workspace, indexed by id,
   * counted in its owner's partition. Moving an item between workspaces is supported.
   */
  function workspaceItems(kind: 'workflow' | 'credential') {
    const indexKey = (id: string) => `${kind}:${id}`;
    const rowKey = (workspace: Workspace, id: string) => `${kind}|${workspaceKey(workspace)}|${id}`;

    async function get(id: string) {
      const ref = await table.get(indexKey(id), REF);
      if (!ref) return undefined;
      const data = parseRow(itemIndexSchema, ref);
      const workspace = parseWorkspaceKey(data.workspace);
      return { workspace, createdAt: data.createdAt, nodeCount: data.nodeCount ?? 0, etag: ref.etag };
    }

    async function put(id: string, workspace: Workspace, extra: { nodeCount?: number }) {
      const ownerId = await ownerOfWorkspace(workspace);
      for (let attempt = 1; attempt <= MAX_INDEX_ATTEMPTS; attempt++) {
        const existing = await get(id);
        const createdAt = existing?.createdAt ?? now();
        const props = { createdAt, ...extra };
        const moved = existing !== undefined && workspaceKey(existing.workspace) !== workspaceKey(workspace);
        const unchanged = existing !== undefined && !moved && existing.nodeCount === (extra.nodeCount ?? 0);

        // Order matters for crash recovery: new row, then old row gone, then the index. Until the index
        // moves, a repeated PUT still sees the old workspace and redoes every step.
        await table.upsert(ownerPartition(ownerId), rowKey(workspace, id), props);
        if (moved) {
          const previousOwner = await ownerOfWorkspace(existing.workspace).catch(() => undefined);
          if (previousOwner !== undefined) {
            await table.delete(ownerPartition(previousOwner), rowKey(existing.workspace, id));
          }
        }
        const kind = !existing ? 'created' : unchanged ? 'unchanged' : 'updated';
        if (unchanged) return { kind, ownerId, createdAt } as const;
        const index = { workspace: workspaceKey(workspace), ...props };
        try {
          // Conditional on what was read: if a concurrent PUT moved the item meanwhile, start again from
          // its state, so its row is moved too and nothing is left counted twice.
          if (existing) await table.update(indexKey(id), REF, index, existing.etag);
          else await table.create(indexKey(id), REF, index);
          return { kind, ownerId, createdAt } as const;
        } catch (error) {
          const raced =
            error instanceof EtagMismatchError ||
            error instanceof EntityExistsError ||
            error instanceof EntityNotFoundError;
          if (!raced) throw error;
        }
      }
      throw new ConcurrencyExhaustedError(
        `${kind} ${id} kept changing under concurrent writes; retry the request`,
        table.name,
      );
    }

    async function remove(id: string): Promise<DeleteOutcome> {
      const existing = await get(id);
      if (!existing) return { kind: 'absent' };
      // The owner's row first, the index last: a crash in between is repaired by repeating the DELETE.
      const ownerId = await ownerOfWorkspace(existing.workspace).catch(() => undefined);
      if (ownerId !== undefined) await table.delete(ownerPartition(ownerId), rowKey(existing.workspace, id));
      await table.delete(indexKey(id), REF);
      return { kind: 'deleted' };
    }

    return { get, put, remove, indexKey };
  }

  const workflows = workspaceItems('workflow');
  const credentials = workspaceItems('credential');

  return {
    getOrg,
    ownerOfWorkspace,

    async putOrg(orgId, input) {
      const existing = await getOrg(orgId);
      if (existing && existing.ownerId !== input.creatorId) {
        // Moving an organization to another payer re-homes its workflows, credentials and seats between
        // two billing accounts; that is an ownership transfer with its own flow, not a directory update.
        throw conflict(
          'org_creator_immutable',
          `Organization ${orgId} was created by ${existing.ownerId}; its creator cannot change to ${input.creatorId}.`,
        );
      }
      const record: OrgRecord = {
        orgId,
        ownerId: input.creatorId,
        name: input.name ?? existing?.name ?? orgId,
        createdAt: existing?.createdAt ?? now(),
      };
      if (existing && existing.name === record.name) return { kind: 'unchanged', record };
      // Owner row first, index last: until the index exists, nothing resolves to the half-written org.
      await table.upsert(ownerPartition(record.ownerId), `org|${orgId}`, {
        name: record.name,
        createdAt: record.createdAt,
      });
      await table.upsert(`org:${orgId}`, REF, {
        ownerId: record.ownerId,
        name: record.name,
        createdAt: record.createdAt,
      });
      return { kind: existing ? 'updated' : 'created', record };
    },

    async deleteOrg(orgId) {
      const org = await getOrg(orgId);
      if (!org) return { kind: 'absent' };
      const partition = ownerPartition(org.ownerId);
      const ws = workspaceKey({ kind: 'org', orgId });
      await deletePrefix(partition, `member|${orgId}|`);
      for (const [kind, items] of [
        ['workflow', workflows],
        ['credential', credentials],
      ] as const) {
        // Index rows before owner rows: if this stops half-way, a repeated DELETE still finds the owner
        // rows (the org index goes last) and removes both.
        const rows = await table.list(partition, { prefix: `${kind}|${ws}|`, select: [] });
        await Promise.all(
          rows.map((row) => table.delete(items.indexKey(row.rowKey.split('|')[2] ?? ''), REF)),
        );
        await Promise.all(rows.map((row) => table.delete(partition, row.rowKey)));
      }
      await table.delete(partition, `org|${orgId}`);
      await table.delete(`org:${orgId}`, REF);
      return { kind: 'deleted' };
    },

    async putMember(orgId, userId, input) {
      const org = await requireOrg(orgId);
      const key = `member|${orgId}|${userId}`;
      const existing = await table.get(ownerPartition(org.ownerId), key);
      const previous = existing ? parseRow(memberRowSchema, existing) : undefined;
      const record: MemberRecord = {
        orgId,
        userId,
        role: input.role ?? previous?.role ?? 'member',
        addedAt: previous?.addedAt ?? now(),
      };
      if (previous && previous.role === record.role) return { kind: 'unchanged', record };
      await table.upsert(ownerPartition(org.ownerId), key, { role: record.role, addedAt: record.addedAt });
      return { kind: previous ? 'updated' : 'created', record };
    },

    async deleteMember(orgId, userId) {
      const org = await getOrg(orgId);
      if (!org) return { kind: 'absent' };
      const deleted = await table.delete(ownerPartition(org.ownerId), `member|${orgId}|${userId}`);
      return { kind: deleted ? 'deleted' : 'absent' };
    },

    async isMember(orgId, userId) {
      const org = await getOrg(orgId);
      if (!org) return false;
      if (org.ownerId === userId) return true;
      return (await table.get(ownerPartition(org.ownerId), `member|${orgId}|${userId}`)) !== undefined;
    },

    async putWorkflow(workflowId, input) {
      const result = await workflows.put(workflowId, input.workspace, { nodeCount: input.nodeCount });
      return {
        kind: result.kind,
        record: {
          workflowId,
          workspace: input.workspace,
          ownerId: result.ownerId,
          nodeCount: input.nodeCount,
          createdAt: result.createdAt,
        },
      };
    },

    deleteWorkflow: (workflowId) => workflows.remove(workflowId),

    async getWorkflow(workflowId) {
      const found = await workflows.get(workflowId);
      if (!found) return undefined;
      const ownerId = await ownerOfWorkspace(found.workspace);
      return {
        workflowId,
        workspace: found.workspace,
        ownerId,
        nodeCount: found.nodeCount,
        createdAt: found.createdAt,
      };
    },

    async putCredential(credentialId, input) {
      const result = await credentials.put(credentialId, input.workspace, {});
      return {
        kind: result.kind,
        record: {
          credentialId,
          workspace: input.workspace,
          ownerId: result.ownerId,
          createdAt: result.createdAt,
        },
      };
    },

    deleteCredential: (credentialId) => credentials.remove(credentialId),

    async items(ownerId) {
      const partition = ownerPartition(ownerId);
      const read = async (kind: 'workflow' | 'credential') =>
        (await table.list(partition, { prefix: `${kind}|` })).map((row) => {
          const [, ws = '', id = ''] = row.rowKey.split('|');
          return {
            id,
            workspace: parseWorkspaceKey(ws),
            createdAt: parseRow(z.object({ createdAt: z.string() }).loose(), row).createdAt,
          };
        });
      const [workflows, credentials] = await Promise.all([read('workflow'), read('credential')]);
      return { workflows, credentials };
    },

    counts(ownerId) {
      const partition = ownerPartition(ownerId);
      return {
        workflows: () => table.count(partition, 'workflow|'),
        workflowsInOrg: (orgId) =>
          table.count(partition, `workflow|${workspaceKey({ kind: 'org', orgId })}|`),
        credentials: () => table.count(partition, 'credential|'),
        async seats() {
          const rows = await table.list(partition, { prefix: 'member|', select: [] });
          const people = new Set<string>([ownerId]);
          for (const row of rows) people.add(row.rowKey.split('|')[2] ?? '');
          return people.size;
        },
        async orgs() {
          const [orgRows, workflowRows] = await Promise.all([
            table.list(partition, { prefix: 'org|' }),
            table.list(partition, { prefix: 'workflow|org:', select: [] }),
          ]);
          const perOrg = new Map<string, number>();
          for (const row of workflowRows) {
            const orgId = row.rowKey.split('|')[1]?.slice('org:'.length) ?? '';
            perOrg.set(orgId, (perOrg.get(orgId) ?? 0) + 1);
          }
          return orgRows
            .map((row) => {
              const orgId = row.rowKey.slice('org|'.length);
              const data = parseRow(z.object({ name: z.string(), createdAt: z.string() }), row);
              return { orgId, name: data.name, createdAt: data.createdAt, workflows: perOrg.get(orgId) ?? 0 };
            })
            .sort((a, b) => a.createdAt.localeCompare(b.createdAt))
            .map(({ orgId, name, workflows: count }) => ({ orgId, name, workflows: count }));
        },
      };
    },
  };
}
