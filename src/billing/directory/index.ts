import { BillingError } from '../errors.js';
import type { CredentialId, OrgId, OwnerId, UserId, WorkflowId, Workspace } from '../ids.js';
import { createOwnerLanes } from '../metering-lanes.js';
import { listOwnedItems } from '../owner/items.js';
import { seatsInUse } from '../owner/snapshot.js';
import { type DirectoryContext, ownerOfOrg, ownerOfWorkspace } from './context.js';
import { createItems } from './items.js';
import { createMembers, type MemberRecord } from './members.js';
import { createOrgs, type OrgInput, type OrgRecord } from './orgs.js';

export type { MemberRecord } from './members.js';
export type { OrgInput, OrgRecord } from './orgs.js';

/**
 * The directory: organizations (with their creator, who is their billing owner), members, workflows
 * and credentials, as pushed by the platform. A PUT that creates something is the claim on a slot of
 * the owner's limits: it answers 402 and writes nothing when the slot is not there (under `enforce`).
 * Layout and crash safety: docs/decisions/0004-owner-snapshot.md.
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
  getCredential(credentialId: CredentialId): Promise<CredentialRecord | undefined>;
  /** The billing owner of a workspace. @throws not_found for an organization the directory does not know */
  ownerOfWorkspace(workspace: Workspace): Promise<OwnerId>;
  /**
   * An organization's creator, or `undefined`. From memory when known, unless `fresh`: a caller whose
   * owner snapshot does not list the organization asks again with `fresh` (it was deleted, and perhaps
   * created again by someone else).
   */
  ownerOfOrg(orgId: OrgId, options?: { readonly fresh?: boolean }): Promise<OwnerId | undefined>;
  /** `ownerOfOrg`, saying whether the answer came from memory (for `minVersion` and the decision trace). */
  orgOwner(
    orgId: OrgId,
    options?: { readonly fresh?: boolean },
  ): Promise<{ readonly ownerId: OwnerId; readonly cached: boolean } | undefined>;
  /** The owner's counts, from its snapshot. */
  counts(ownerId: OwnerId): Promise<OwnerCounts>;
  /** Every workflow and credential the owner pays for, with where it lives and when it was created. */
  items(ownerId: OwnerId): Promise<{ workflows: OwnedItemView[]; credentials: OwnedItemView[] }>;
}

export interface OwnerCounts {
  readonly workflows: number;
  readonly credentials: number;
  /** Distinct people across the owner's organizations, the owner included. */
  readonly seats: number;
  /** The owner's organizations with their workflow counts, oldest first. */
  readonly orgs: ReadonlyArray<{ readonly orgId: OrgId; readonly name: string; readonly workflows: number }>;
}

export interface OwnedItemView {
  readonly id: string;
  readonly workspace: Workspace;
  readonly createdAt: string;
}

export interface MemberInput {
  readonly role?: string | undefined;
  /** `false` records without enforcing the seat limit (a backfill). @default true */
  readonly enforce?: boolean | undefined;
}
export interface WorkflowInput {
  readonly workspace: Workspace;
  readonly nodeCount: number;
  /** `false` records without enforcing limits (a backfill); the workflow may then be locked. @default true */
  readonly enforce?: boolean | undefined;
}
export interface CredentialInput {
  readonly workspace: Workspace;
  readonly enforce?: boolean | undefined;
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

/** What the directory is built from: its parts' shared context, less the lanes it makes itself. */
export type DirectoryDeps = Omit<DirectoryContext, 'lanes'>;

export function createDirectory(deps: DirectoryDeps): Directory {
  const ctx: DirectoryContext = { ...deps, lanes: createOwnerLanes() };
  const workflows = createItems(ctx, 'workflow');
  const credentials = createItems(ctx, 'credential');
  const members = createMembers(ctx);
  const orgs = createOrgs(ctx, { workflows, credentials, members });

  /**
   * An organization remembered with a creator it no longer has (deleted, and created again by someone
   * else, in another process) reads as absent in that creator's snapshot: look it up afresh, once.
   */
  async function withFreshOrg<T>(orgId: OrgId | undefined, write: () => Promise<T>): Promise<T> {
    const remembered = orgId !== undefined && ctx.orgOwners.get(orgId) !== undefined;
    try {
      return await write();
    } catch (error) {
      if (!remembered || !(error instanceof BillingError) || error.code !== 'org_not_found') throw error;
      ctx.orgOwners.forget(orgId);
      return write();
    }
  }
  const orgOf = (workspace: Workspace) => (workspace.kind === 'org' ? workspace.orgId : undefined);

  return {
    putOrg: orgs.putOrg,
    deleteOrg: orgs.removeOrg,
    getOrg: orgs.getOrg,

    putMember: (orgId, userId, input) =>
      withFreshOrg(orgId, () =>
        members.put(orgId, userId, { role: input.role, enforce: input.enforce ?? true }),
      ),
    deleteMember: members.remove,
    isMember: (orgId, userId) => members.isMember(orgId, userId),

    async putWorkflow(workflowId, input) {
      const outcome = await withFreshOrg(orgOf(input.workspace), () =>
        workflows.put(workflowId, { ...input, enforce: input.enforce ?? true }),
      );
      const { record } = outcome;
      return {
        kind: outcome.kind,
        record: {
          workflowId,
          workspace: record.workspace,
          ownerId: record.ownerId,
          nodeCount: record.nodeCount,
          createdAt: record.createdAt,
        },
      };
    },
    deleteWorkflow: workflows.remove,
    async getWorkflow(workflowId) {
      const found = await workflows.get(workflowId);
      return (
        found && {
          workflowId,
          workspace: found.workspace,
          ownerId: found.ownerId,
          nodeCount: found.nodeCount,
          createdAt: found.createdAt,
        }
      );
    },

    async putCredential(credentialId, input) {
      const outcome = await withFreshOrg(orgOf(input.workspace), () =>
        credentials.put(credentialId, {
          workspace: input.workspace,
          nodeCount: 0,
          enforce: input.enforce ?? true,
        }),
      );
      const { record } = outcome;
      return {
        kind: outcome.kind,
        record: {
          credentialId,
          workspace: record.workspace,
          ownerId: record.ownerId,
          createdAt: record.createdAt,
        },
      };
    },
    deleteCredential: credentials.remove,
    async getCredential(credentialId) {
      const found = await credentials.get(credentialId);
      return (
        found && {
          credentialId,
          workspace: found.workspace,
          ownerId: found.ownerId,
          createdAt: found.createdAt,
        }
      );
    },

    ownerOfWorkspace: (workspace) => ownerOfWorkspace(ctx, workspace),
    async ownerOfOrg(orgId, options = {}) {
      if (options.fresh) ctx.orgOwners.forget(orgId);
      return ownerOfOrg(ctx, orgId);
    },
    async orgOwner(orgId, options = {}) {
      if (options.fresh) ctx.orgOwners.forget(orgId);
      const remembered = ctx.orgOwners.get(orgId);
      if (remembered !== undefined) return { ownerId: remembered, cached: true };
      const ownerId = await ownerOfOrg(ctx, orgId);
      return ownerId === undefined ? undefined : { ownerId, cached: false };
    },

    async counts(ownerId) {
      const snapshot = await ctx.owners.read(ownerId);
      return {
        workflows: snapshot.allocation.workflows,
        credentials: snapshot.allocation.credentials,
        seats: seatsInUse(snapshot),
        orgs: [...snapshot.orgs]
          .filter(([, org]) => org.row.deleting !== true)
          .sort(([, a], [, b]) => a.row.createdAt.localeCompare(b.row.createdAt))
          .map(([orgId, org]) => ({ orgId, name: org.row.name, workflows: org.row.workflows })),
      };
    },

    async items(ownerId) {
      const { workflows: wf, credentials: cr } = await listOwnedItems(ctx.ownerTable, ownerId);
      const view = ({ id, workspace, createdAt }: OwnedItemView) => ({ id, workspace, createdAt });
      return { workflows: wf.map(view), credentials: cr.map(view) };
    },
  };
}
