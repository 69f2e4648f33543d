import { z } from 'zod';
import type { PlanLimits } from './catalog.js';
import type { Directory, OwnedItem } from './directory.js';
import { validationError } from './errors.js';
import type { OwnerId } from './ids.js';
import type { EntityTable } from './store.js';

/**
 * Over-limit resources are locked, never deleted. After a downgrade (or a lapse to free), the owner keeps
 * the resources they chose to keep, then the oldest, up to each limit; the rest are locked until the owner
 * upgrades, deletes some, or picks others to keep.
 */
export interface LockedItem {
  readonly id: string;
  readonly workspace: OwnedItem['workspace'];
  readonly createdAt: string;
  /** The limit it is over. */
  readonly limit: 'workflows' | 'workflows_per_org' | 'credentials';
}

export interface LockReport {
  readonly workflows: readonly LockedItem[];
  readonly credentials: readonly LockedItem[];
}

export interface KeepPreferences {
  readonly workflows: readonly string[];
  readonly credentials: readonly string[];
}

const KEEP_ROW = 'locks|keep';
const keepSchema = z.object({ workflows: z.string(), credentials: z.string() });

/** Kept first: the owner's picks (in their order), then oldest first. */
function keepOrder(items: readonly OwnedItem[], picks: readonly string[]): OwnedItem[] {
  const rank = new Map(picks.map((id, i) => [id, i]));
  return [...items].sort((a, b) => {
    const ra = rank.get(a.id) ?? Number.POSITIVE_INFINITY;
    const rb = rank.get(b.id) ?? Number.POSITIVE_INFINITY;
    return ra !== rb ? ra - rb : a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id);
  });
}

export function computeLocks(
  items: { readonly workflows: readonly OwnedItem[]; readonly credentials: readonly OwnedItem[] },
  limits: PlanLimits,
  keep: KeepPreferences,
): LockReport {
  const locked = new Map<string, LockedItem>();
  const lockBeyond = (list: OwnedItem[], limit: number | null, name: LockedItem['limit']) => {
    if (limit === null) return;
    for (const item of list.slice(limit))
      if (!locked.has(item.id)) locked.set(item.id, { ...item, limit: name });
  };
  const workflows = keepOrder(items.workflows, keep.workflows);
  const byOrg = new Map<string, OwnedItem[]>();
  for (const wf of workflows) {
    if (wf.workspace.kind === 'org')
      byOrg.set(wf.workspace.orgId, [...(byOrg.get(wf.workspace.orgId) ?? []), wf]);
  }
  for (const list of byOrg.values()) lockBeyond(list, limits.workflows_per_org, 'workflows_per_org');
  // The total counts what the per-organization rule left unlocked, in the same keep order.
  lockBeyond(
    workflows.filter((wf) => !locked.has(wf.id)),
    limits.workflows,
    'workflows',
  );
  const lockedWorkflows = [...locked.values()];
  locked.clear();
  lockBeyond(keepOrder(items.credentials, keep.credentials), limits.credentials, 'credentials');
  return { workflows: lockedWorkflows, credentials: [...locked.values()] };
}

export interface Locks {
  report(ownerId: OwnerId, limits: PlanLimits): Promise<LockReport>;
  /** Whether one workflow is locked; cheap when the owner is within every workflow limit. */
  isWorkflowLocked(
    ownerId: OwnerId,
    workflow: { readonly workflowId: string; readonly workspace: OwnedItem['workspace'] },
    limits: PlanLimits,
  ): Promise<boolean>;
  preferences(ownerId: OwnerId): Promise<KeepPreferences>;
  setPreferences(ownerId: OwnerId, keep: Partial<KeepPreferences>): Promise<KeepPreferences>;
}

export function createLocks(deps: {
  readonly directory: Directory;
  readonly billingTable: EntityTable;
}): Locks {
  const { directory, billingTable } = deps;

  async function preferences(ownerId: OwnerId): Promise<KeepPreferences> {
    const row = await billingTable.get(ownerId, KEEP_ROW);
    if (!row) return { workflows: [], credentials: [] };
    const data = keepSchema.parse(row.props);
    const ids = z.array(z.string());
    return {
      workflows: ids.parse(JSON.parse(data.workflows)),
      credentials: ids.parse(JSON.parse(data.credentials)),
    };
  }

  async function report(ownerId: OwnerId, limits: PlanLimits) {
    const [items, keep] = await Promise.all([directory.items(ownerId), preferences(ownerId)]);
    return computeLocks(items, limits, keep);
  }

  return {
    report,
    preferences,
    async isWorkflowLocked(ownerId, workflow, limits) {
      const { workflowId, workspace } = workflow;
      if (limits.workflows === null && limits.workflows_per_org === null) return false;
      const counts = directory.counts(ownerId);
      const perOrg = limits.workflows_per_org;
      // A workflow can only be locked if its own organization is over the per-org limit or the owner is
      // over the total; in the common case two counts settle it and nothing more is read.
      const [inOrg, total] = await Promise.all([
        workspace.kind === 'org' && perOrg !== null
          ? counts.workflowsInOrg(workspace.orgId)
          : Promise.resolve(0),
        limits.workflows !== null ? counts.workflows() : Promise.resolve(0),
      ]);
      const overPerOrg = perOrg !== null && inOrg > perOrg;
      const overTotal = limits.workflows !== null && total > limits.workflows;
      if (!overPerOrg && !overTotal) return false;
      return (await report(ownerId, limits)).workflows.some((wf) => wf.id === workflowId);
    },
    async setPreferences(ownerId, keep) {
      const current = await preferences(ownerId);
      const next = {
        workflows: keep.workflows ?? current.workflows,
        credentials: keep.credentials ?? current.credentials,
      };
      if (next.workflows.length > 10_000 || next.credentials.length > 10_000) {
        throw validationError('too_many_ids', 'At most 10,000 ids per list.');
      }
      await billingTable.upsert(ownerId, KEEP_ROW, {
        workflows: JSON.stringify(next.workflows),
        credentials: JSON.stringify(next.credentials),
      });
      return next;
    },
  };
}
