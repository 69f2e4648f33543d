import { type OwnerEnforcement, ownerEnforcementSchema } from '../enforcement.js';
import { ENFORCEMENT_ROW } from '../owner/keys.js';
import type { OwnerAccess } from '../owner/owner-access.js';
import type { EntityTable } from '../store.js';
import { createOwnerSettings, type OwnerSettings } from './owner-setting.js';

/**
 * `PUT/GET/DELETE /api/ops/owners/{ownerId}/enforcement`: the enforcement modes of one owner, first in
 * the resolution order (`enforcement.ts` `resolveMode`). In the owner's snapshot (`s|o|enf`), so it applies
 * to the owner's next decision everywhere at once, and bumps the version like every snapshot change.
 */
export type OwnerEnforcementSettings = OwnerSettings<OwnerEnforcement>;

export function createOwnerEnforcement(deps: {
  readonly table: EntityTable;
  readonly owners: Pick<OwnerAccess, 'read'>;
  readonly now: () => Date;
}): OwnerEnforcementSettings {
  return createOwnerSettings<OwnerEnforcement>(
    {
      name: 'enforcement',
      rowKey: ENFORCEMENT_ROW,
      property: 'enforcement',
      schema: ownerEnforcementSchema,
      revertible: 'enforcement',
      stored: (snapshot) => snapshot.enforcement,
    },
    deps,
  );
}
