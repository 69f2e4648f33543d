import type { PlanLimits } from '../catalog.js';
import type { OrgId, Workspace } from '../ids.js';

/**
 * Over-limit resources are locked, never deleted. After a downgrade or a lapse, in each scope that is
 * over its limit the owner keeps the items they picked (in their order), then the oldest, up to the
 * limit; the rest are locked until the owner upgrades, deletes some, or picks others.
 *
 * Scopes: each organization's workflows (`workflows_per_org`), then the owner's workflows that no
 * organization locked (`workflows`), and the owner's credentials (`credentials`).
 *
 * The lock set is stored in the owner snapshot as what is KEPT in each scope that is over its limit:
 * that is bounded by the plan's limits whatever the number of items, so reading it stays cheap for an
 * owner with 10,000 workflows on a plan that keeps 10. Everything here is pure.
 */

export interface OwnedItem {
  readonly id: string;
  readonly workspace: Workspace;
  readonly createdAt: string;
}

export interface KeepPreferences {
  readonly workflows: readonly string[];
  readonly credentials: readonly string[];
}

export const NO_PICKS: KeepPreferences = { workflows: [], credentials: [] };

export type LockLimits = Pick<PlanLimits, 'workflows' | 'workflows_per_org' | 'credentials'>;

/** Where the last item kept for its age (not for being picked) sorts: a newer one is locked. */
export interface Boundary {
  readonly createdAt: string;
  readonly id: string;
}

/** One scope over its limit: what is kept; everything else in the scope is locked. */
export interface KeptScope {
  readonly kept: readonly string[];
  /** `null` when every kept item was picked (then every unpicked item is locked). */
  readonly boundary: Boundary | null;
}

export interface LockSet {
  /** The limits the set was computed for (`lockBasis`); a set for other limits is stale. */
  readonly basis: string;
  /** Organizations over `workflows_per_org`. */
  readonly orgs: Readonly<Record<OrgId, KeptScope>>;
  /** Workflows locked by some organization's limit, in all. */
  readonly lockedInOrgs: number;
  /** When the workflows no organization locked are over `workflows`. */
  readonly workflows: KeptScope | null;
  readonly credentials: KeptScope | null;
}

export type LockedBy = 'workflows' | 'workflows_per_org' | 'credentials';

export interface LockedItem extends OwnedItem {
  /** The limit it is over. */
  readonly limit: LockedBy;
}

export interface LockReport {
  readonly workflows: readonly LockedItem[];
  readonly credentials: readonly LockedItem[];
}

export const lockBasis = (limits: LockLimits) =>
  `${limits.workflows ?? '-'}/${limits.workflows_per_org ?? '-'}/${limits.credentials ?? '-'}`;

export const emptyLockSet = (limits: LockLimits): LockSet => ({
  basis: lockBasis(limits),
  orgs: {},
  lockedInOrgs: 0,
  workflows: null,
  credentials: null,
});

export const hasLocks = (set: LockSet) =>
  set.workflows !== null || set.credentials !== null || Object.keys(set.orgs).length > 0;

const compareAge = (a: Boundary, b: Boundary) =>
  a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id);

/** Kept first: the owner's picks (in their order), then oldest first. */
export function keepOrder(items: readonly OwnedItem[], picks: readonly string[]): OwnedItem[] {
  const rank = new Map(picks.map((id, i) => [id, i]));
  return [...items].sort((a, b) => {
    const ra = rank.get(a.id) ?? Number.POSITIVE_INFINITY;
    const rb = rank.get(b.id) ?? Number.POSITIVE_INFINITY;
    return ra !== rb ? ra - rb : compareAge(a, b);
  });
}

function keptScope(ordered: readonly OwnedItem[], limit: number, picks: ReadonlySet<string>): KeptScope {
  const kept = ordered.slice(0, limit);
  const byAge = kept.filter((item) => !picks.has(item.id));
  const last = byAge[byAge.length - 1];
  return {
    kept: kept.map((item) => item.id),
    boundary: last ? { createdAt: last.createdAt, id: last.id } : null,
  };
}

/** The lock set from every item, the limits in force and the owner's picks. */
export function computeLockSet(
  items: { readonly workflows: readonly OwnedItem[]; readonly credentials: readonly OwnedItem[] },
  limits: LockLimits,
  keep: KeepPreferences,
): LockSet {
  const workflowPicks = new Set(keep.workflows);
  const workflows = keepOrder(items.workflows, keep.workflows);
  const byOrg = new Map<OrgId, OwnedItem[]>();
  for (const wf of workflows) {
    if (wf.workspace.kind !== 'org') continue;
    const list = byOrg.get(wf.workspace.orgId);
    if (list) list.push(wf);
    else byOrg.set(wf.workspace.orgId, [wf]);
  }
  const orgs: Record<OrgId, KeptScope> = {};
  const lockedByOrg = new Set<string>();
  const perOrg = limits.workflows_per_org;
  if (perOrg !== null) {
    for (const [orgId, list] of byOrg) {
      if (list.length <= perOrg) continue;
      orgs[orgId] = keptScope(list, perOrg, workflowPicks);
      for (const wf of list.slice(perOrg)) lockedByOrg.add(wf.id);
    }
  }
  // The total counts what the organizations' limits left unlocked, in the same keep order.
  const candidates = workflows.filter((wf) => !lockedByOrg.has(wf.id));
  const total = limits.workflows;
  const credentials = keepOrder(items.credentials, keep.credentials);
  const credentialLimit = limits.credentials;
  return {
    basis: lockBasis(limits),
    orgs,
    lockedInOrgs: lockedByOrg.size,
    workflows:
      total !== null && candidates.length > total ? keptScope(candidates, total, workflowPicks) : null,
    credentials:
      credentialLimit !== null && credentials.length > credentialLimit
        ? keptScope(credentials, credentialLimit, new Set(keep.credentials))
        : null,
  };
}

/** Why a workflow is locked, or `undefined` when it is not. */
export function workflowLock(
  set: LockSet,
  workflow: { readonly id: string; readonly workspace: Workspace },
): LockedBy | undefined {
  const org = workflow.workspace.kind === 'org' ? set.orgs[workflow.workspace.orgId] : undefined;
  if (org && !org.kept.includes(workflow.id)) return 'workflows_per_org';
  if (set.workflows && !set.workflows.kept.includes(workflow.id)) return 'workflows';
  return undefined;
}

export function credentialLock(set: LockSet, id: string): LockedBy | undefined {
  return set.credentials && !set.credentials.kept.includes(id) ? 'credentials' : undefined;
}

/** Every locked item, each list in keep order. */
export function lockReport(
  set: LockSet,
  items: { readonly workflows: readonly OwnedItem[]; readonly credentials: readonly OwnedItem[] },
  keep: KeepPreferences,
): LockReport {
  const locked = (list: OwnedItem[], why: (item: OwnedItem) => LockedBy | undefined): LockedItem[] =>
    list.flatMap((item) => {
      const limit = why(item);
      // Only the public fields: listed items are storage records (claims, ETags) that must not leave.
      return limit ? [{ id: item.id, workspace: item.workspace, createdAt: item.createdAt, limit }] : [];
    });
  return {
    workflows: locked(keepOrder(items.workflows, keep.workflows), (wf) => workflowLock(set, wf)),
    credentials: locked(keepOrder(items.credentials, keep.credentials), (c) => credentialLock(set, c.id)),
  };
}

/** The counts the lock set's scopes are measured by, before a change. */
export interface ScopeCounts {
  /** The owner's workflows. */
  readonly workflows: number;
  /** Workflows in the organization concerned (for org workspaces). */
  readonly inOrg: number;
  readonly credentials: number;
}

/**
 * The lock set after one item is added, when that follows without listing every item: the new item
 * was not picked and is younger than everything kept for its age, so in a scope already over its
 * limit it is simply locked, and a scope that stays within its limit is untouched. `undefined` means
 * the set must be computed again from every item (a scope crosses its limit, or the item may displace
 * a kept one).
 */
export function lockSetAfterAdd(
  set: LockSet,
  kind: 'workflow' | 'credential',
  item: OwnedItem,
  before: ScopeCounts,
  limits: LockLimits,
  keep: KeepPreferences,
): LockSet | undefined {
  if (set.basis !== lockBasis(limits)) return undefined;
  const picks = kind === 'workflow' ? keep.workflows : keep.credentials;
  if (picks.includes(item.id)) return undefined;
  const after = (scope: KeptScope | null, limit: number | null, countBefore: number) => {
    if (limit === null) return { scope: null, locked: false };
    if (scope === null) return countBefore + 1 <= limit ? { scope: null, locked: false } : undefined;
    if (scope.boundary !== null && compareAge(item, scope.boundary) <= 0) return undefined;
    return { scope, locked: true };
  };
  if (kind === 'credential') {
    const credentials = after(set.credentials, limits.credentials, before.credentials);
    return credentials ? set : undefined;
  }
  let lockedByOrg = false;
  if (item.workspace.kind === 'org') {
    const org = after(set.orgs[item.workspace.orgId] ?? null, limits.workflows_per_org, before.inOrg);
    if (!org) return undefined;
    lockedByOrg = org.locked;
  }
  if (lockedByOrg) return { ...set, lockedInOrgs: set.lockedInOrgs + 1 };
  const total = after(set.workflows, limits.workflows, before.workflows - set.lockedInOrgs);
  return total ? set : undefined;
}

/**
 * The lock set after one item is removed, when that follows without listing: a locked item leaves a
 * scope that stays over its limit, or a scope falls within its limit with nothing kept in another
 * scope changing. `undefined` means compute again from every item.
 */
export function lockSetAfterRemove(
  set: LockSet,
  kind: 'workflow' | 'credential',
  item: { readonly id: string; readonly workspace: Workspace },
  before: ScopeCounts,
  limits: LockLimits,
): LockSet | undefined {
  if (set.basis !== lockBasis(limits)) return undefined;
  if (kind === 'credential') {
    if (set.credentials === null) return set;
    if (set.credentials.kept.includes(item.id)) return undefined;
    const limit = limits.credentials;
    return limit !== null && before.credentials - 1 > limit ? set : { ...set, credentials: null };
  }
  const orgId = item.workspace.kind === 'org' ? item.workspace.orgId : undefined;
  const org = orgId === undefined ? undefined : set.orgs[orgId];
  if (org && orgId !== undefined) {
    if (org.kept.includes(item.id)) return undefined;
    // A workflow locked by its organization: the total never counted it.
    const perOrg = limits.workflows_per_org;
    if (perOrg !== null && before.inOrg - 1 > perOrg) return { ...set, lockedInOrgs: set.lockedInOrgs - 1 };
    return undefined; // the organization falls within its limit: its locked ones join the total
  }
  if (set.workflows === null) return set;
  if (set.workflows.kept.includes(item.id)) return undefined;
  const total = limits.workflows;
  const candidates = before.workflows - set.lockedInOrgs;
  return total !== null && candidates - 1 > total ? set : { ...set, workflows: null };
}
