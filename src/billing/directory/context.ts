import type { Catalog } from '../catalog.js';
import type { Clock } from '../clock.js';
import type { EnforcementSource } from '../enforcement.js';
import { notFound } from '../errors.js';
import type { OrgId, OwnerId, Workspace } from '../ids.js';
import type { OwnerLanes } from '../metering-lanes.js';
import type { OwnerAccess } from '../owner/owner-access.js';
import type { EntityTable } from '../store.js';
import { type OrgIndex, orgIndexPartition, parseOrgIndex, REF } from './index-rows.js';
import type { OrgOwnerCache } from './org-owners.js';

/** What the directory's parts share. */
export interface DirectoryContext {
  /** The `directory` table: index partitions only. */
  readonly indexTable: EntityTable;
  /** The owner-partitioned `billing` table: items, members, counts. */
  readonly ownerTable: EntityTable;
  readonly owners: OwnerAccess;
  readonly orgOwners: OrgOwnerCache;
  readonly catalog: Catalog;
  /** The enforcement policy in force (configuration and cohort rules), read before each decision. */
  readonly enforcement: EnforcementSource;
  readonly clock: Clock;
  /** Claims for one owner run one after another in this process, so they do not race each other. */
  readonly lanes: OwnerLanes;
  /**
   * Told after a membership change that moved the owner's count of people has committed (the seat
   * sync is queued from here). It must answer at once and never throw: the change is made whatever
   * happens to the request, and the `seatSync` timer repairs a lost one.
   */
  readonly seatsChanged?: (ownerId: OwnerId) => Promise<void>;
}

export async function readOrgIndex(ctx: DirectoryContext, orgId: OrgId): Promise<OrgIndex | undefined> {
  const row = await ctx.indexTable.get(orgIndexPartition(orgId), REF);
  if (!row) return undefined;
  const index = parseOrgIndex(row);
  ctx.orgOwners.set(orgId, index.ownerId);
  return index;
}

/** The creator of an organization, from memory or its index (`undefined`: no such organization). */
export async function ownerOfOrg(ctx: DirectoryContext, orgId: OrgId): Promise<OwnerId | undefined> {
  return ctx.orgOwners.get(orgId) ?? (await readOrgIndex(ctx, orgId))?.ownerId;
}

export const orgNotFound = (orgId: OrgId) =>
  notFound(
    'org_not_found',
    `Organization ${orgId} is not in the directory; PUT it before its members or items.`,
  );

/** The billing owner of a workspace. @throws org_not_found */
export async function ownerOfWorkspace(ctx: DirectoryContext, workspace: Workspace): Promise<OwnerId> {
  if (workspace.kind === 'personal') return workspace.userId;
  const ownerId = await ownerOfOrg(ctx, workspace.orgId);
  if (ownerId === undefined) throw orgNotFound(workspace.orgId);
  return ownerId;
}

export const sameWorkspace = (a: Workspace, b: Workspace) =>
  a.kind === 'org' ? b.kind === 'org' && a.orgId === b.orgId : b.kind === 'personal' && a.userId === b.userId;
