import type { Directory } from '../billing/directory/index.js';
import { forbidden } from '../billing/errors.js';
import type { OwnerId, Workspace } from '../billing/ids.js';
import type { Principal } from './auth.js';
import { tenantOf } from './tenant.js';

/**
 * Only the billing owner changes billing: in an organization that is its creator; members may read the
 * summary but get 403 here.
 */
export async function requireBillingOwner(
  principal: Principal,
  directory: Directory,
): Promise<{ readonly ownerId: OwnerId; readonly workspace: Workspace }> {
  const { ownerId, workspace } = await tenantOf(principal, directory);
  if (ownerId !== principal.userId) {
    throw forbidden(
      'billing_owner_only',
      `Only the billing owner (${ownerId}, who created this organization) can change its billing.`,
    );
  }
  return { ownerId, workspace };
}
