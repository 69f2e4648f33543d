import type { OrgId, OwnerId } from '../ids.js';

/**
 * Organization -> creator, remembered in this process. An organization's creator never changes, so
 * the mapping only goes stale when the organization is deleted (and perhaps created again by someone
 * else); every reader confirms it against the owner's snapshot, which lists the owner's organizations,
 * and forgets it when the snapshot does not (`OwnerAccess.resolve`).
 */
export interface OrgOwnerCache {
  get(orgId: OrgId): OwnerId | undefined;
  set(orgId: OrgId, ownerId: OwnerId): void;
  forget(orgId: OrgId): void;
}

export function createOrgOwnerCache(maxEntries = 100_000): OrgOwnerCache {
  const entries = new Map<OrgId, OwnerId>();
  return {
    get(orgId) {
      const ownerId = entries.get(orgId);
      if (ownerId !== undefined) {
        // Most recently used last, so the oldest is evicted first.
        entries.delete(orgId);
        entries.set(orgId, ownerId);
      }
      return ownerId;
    },
    set(orgId, ownerId) {
      entries.delete(orgId);
      entries.set(orgId, ownerId);
      if (entries.size > maxEntries) {
        const oldest = entries.keys().next();
        if (!oldest.done) entries.delete(oldest.value);
      }
    },
    forget(orgId) {
      entries.delete(orgId);
    },
  };
}
