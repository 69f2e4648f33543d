import type { Directory } from '../billing/directory/index.js';
import { forbidden } from '../billing/errors.js';
import type { OwnerId, Workspace } from '../billing/ids.js';
import { annotateOwner } from '../telemetry/attributes.js';
import type { Principal } from './auth.js';

/**
 * The workspace a user's token speaks for, and who pays for it. The tenant comes from the verified
 * token and the directory only, never from the request: a user outside the token's organization gets 403.
 * (The owner's snapshot, read next by the caller, confirms the organization still exists.)
 */
export async function tenantOf(
  principal: Principal,
  directory: Directory,
  /** Look the organization's creator up again rather than trust memory (see `Directory.ownerOfOrg`). */
  options: { readonly fresh?: boolean } = {},
): Promise<{ readonly ownerId: OwnerId; readonly workspace: Workspace }> {
  if (principal.orgId === undefined) {
    annotateOwner(principal.userId);
    return { ownerId: principal.userId, workspace: { kind: 'personal', userId: principal.userId } };
  }
  const ownerId = await directory.ownerOfOrg(principal.orgId, options);
  // Unknown organization and non-member answer alike, so the answer does not reveal which orgs exist.
  const member = ownerId !== undefined && (await directory.isMember(principal.orgId, principal.userId));
  if (ownerId === undefined || !member) {
    throw forbidden('not_a_member', `You are not a member of organization ${principal.orgId}.`);
  }
  annotateOwner(ownerId);
  return { ownerId, workspace: { kind: 'org', orgId: principal.orgId } };
}
