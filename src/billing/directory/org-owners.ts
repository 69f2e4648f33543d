import type { OrgId, OwnerId } from '../ids.js';
import { LruMap } from '../lru.js';

/**
 * Organization -> creator, remembered in this process. An organization's creator never changes, so
 * the mapping only goes stale when the organization is deleted (and perhaps created again by someone
 * else); every reader confirms it against the owner's snapshot, which lists the owner's organizations,
 * and forgets it when the snapshot does not.
 */
export interface OrgOwnerCache {
  get(orgId: OrgId): OwnerId | undefined;
  set(orgId: OrgId, ownerId: OwnerId): void;
  forget(orgId: OrgId): void;
}

export function createOrgOwnerCache(maxEntries = 100_000): OrgOwnerCache {
  const entries = new LruMap<OrgId, OwnerId>(maxEntries);
  return {
    get: (orgId) => entries.get(orgId),
    set: (orgId, ownerId) => entries.set(orgId, ownerId),
    forget: (orgId) => entries.delete(orgId),
  };
}
