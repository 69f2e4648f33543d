import { withinLockLimits } from '../../src/billing/access/allocation.js';
import { capabilitiesFor } from '../../src/billing/access/decide.js';
import { computeLockSet, hasLocks, lockBasis } from '../../src/billing/access/locks.js';
import { catalog } from '../../src/billing/catalog.js';
import {
  itemIndexPartition,
  orgIndexPartition,
  parseItemIndex,
  parseOrgIndex,
  REF,
} from '../../src/billing/directory/index-rows.js';
import { workspaceKey } from '../../src/billing/ids.js';
import { parseItemRow } from '../../src/billing/owner/items.js';
import { parseSnapshot } from '../../src/billing/owner/snapshot.js';
import type { EntityTable } from '../../src/billing/store.js';

const parseOrgIndexRow = (row: Awaited<ReturnType<EntityTable['get']>>) =>
  row ? parseOrgIndex(row) : undefined;

/**
 * What must hold for the directory after every operation has finished (retried to completion), read
 * straight from storage: counts equal what they count, every counted row is named by its index, and
 * every index names a counted row. Returns the violations (empty when all hold).
 */
export async function directoryViolations(
  tables: { readonly directory: EntityTable; readonly billing: EntityTable },
  scope: {
    readonly owners: readonly string[];
    readonly orgs: readonly string[];
    readonly workflows: readonly string[];
    readonly credentials: readonly string[];
  },
): Promise<string[]> {
  const problems: string[] = [];
  const liveRows = new Map<string, Array<{ owner: string; workspace: string; gen: number }>>();
  const orgOwners = new Map<string, string>();

  for (const owner of scope.owners) {
    const rows = await tables.billing.list(owner);
    const snapshot = parseSnapshot(
      owner,
      rows.filter((r) => r.rowKey.startsWith('s|')),
      new Date(),
    );
    const items = rows.filter((r) => r.rowKey.startsWith('item|')).map(parseItemRow);
    const live = items.filter((i) => i.row.dead !== true);
    for (const item of live) {
      const key = `${item.kind}:${item.id}`;
      liveRows.set(key, [
        ...(liveRows.get(key) ?? []),
        { owner, workspace: workspaceKey(item.workspace), gen: item.row.gen },
      ]);
    }
    const liveWorkflows = live.filter((i) => i.kind === 'workflow');
    const liveCredentials = live.filter((i) => i.kind === 'credential');
    if (snapshot.allocation.workflows !== liveWorkflows.length)
      problems.push(
        `${owner}: counts ${snapshot.allocation.workflows} workflows, holds ${liveWorkflows.length}`,
      );
    if (snapshot.allocation.credentials !== liveCredentials.length)
      problems.push(
        `${owner}: counts ${snapshot.allocation.credentials} credentials, holds ${liveCredentials.length}`,
      );

    const members = rows.filter((r) => r.rowKey.startsWith('member|')).map((r) => r.rowKey.split('|'));
    for (const [orgId, org] of snapshot.orgs) {
      orgOwners.set(orgId, owner);
      if (org.row.deleting) problems.push(`${owner}: organization ${orgId} is still marked deleting`);
      const inOrg = (i: { workspace: { kind: string } & ({ orgId: string } | { userId: string }) }) =>
        i.workspace.kind === 'org' && 'orgId' in i.workspace && i.workspace.orgId === orgId;
      const wf = liveWorkflows.filter(inOrg).length;
      const cr = liveCredentials.filter(inOrg).length;
      const mb = members.filter(([, o]) => o === orgId).length;
      if (org.row.workflows !== wf)
        problems.push(`${owner}: ${orgId} counts ${org.row.workflows} workflows, holds ${wf}`);
      if (org.row.credentials !== cr)
        problems.push(`${owner}: ${orgId} counts ${org.row.credentials} credentials, holds ${cr}`);
      if (org.row.members !== mb)
        problems.push(`${owner}: ${orgId} counts ${org.row.members} members, holds ${mb}`);
    }
    for (const item of live) {
      if (item.workspace.kind === 'org' && !snapshot.orgs.has(item.workspace.orgId))
        problems.push(
          `${owner}: ${item.kind} ${item.id} counted in organization ${item.workspace.orgId}, which is gone`,
        );
    }
    for (const [, orgId] of members) {
      if (orgId !== undefined && !snapshot.orgs.has(orgId))
        problems.push(`${owner}: a member of ${orgId}, which is gone`);
    }
    const people = new Map<string, number>();
    for (const [, , userId] of members)
      if (userId !== undefined && userId !== owner) people.set(userId, (people.get(userId) ?? 0) + 1);
    const seatRows = rows.filter((r) => r.rowKey.startsWith('seat|'));
    for (const row of seatRows) {
      const userId = row.rowKey.slice('seat|'.length);
      if (Number(row.props.orgs) !== people.get(userId))
        problems.push(
          `${owner}: seat of ${userId} counts ${row.props.orgs} organizations, holds ${people.get(userId) ?? 0}`,
        );
    }
    if (seatRows.length !== people.size)
      problems.push(`${owner}: ${seatRows.length} seat rows for ${people.size} people`);
    if (snapshot.otherPeople.count !== people.size)
      problems.push(`${owner}: counts ${snapshot.otherPeople.count} other people, holds ${people.size}`);

    const caps = capabilitiesFor(snapshot, catalog);
    const orgCounts = [...snapshot.orgs.values()].map((o) => o.row.workflows);
    if (
      !withinLockLimits(
        { workflows: liveWorkflows.length, credentials: liveCredentials.length, orgs: orgCounts },
        caps.limits,
      )
    ) {
      const expected = computeLockSet(
        { workflows: liveWorkflows, credentials: liveCredentials },
        caps.limits,
        snapshot.keep.picks,
      );
      const stored = snapshot.allocation.locks;
      if (
        !stored ||
        stored.basis !== lockBasis(caps.limits) ||
        JSON.stringify(stored) !== JSON.stringify(expected)
      )
        problems.push(
          `${owner}: stored lock set ${JSON.stringify(stored)} is not ${JSON.stringify(expected)}`,
        );
    } else if (
      snapshot.allocation.locks &&
      hasLocks(snapshot.allocation.locks) &&
      snapshot.allocation.locks.basis === lockBasis(caps.limits)
    ) {
      problems.push(`${owner}: within every limit but the lock set locks something`);
    }
  }

  for (const orgId of scope.orgs) {
    const row = await tables.directory.get(orgIndexPartition(orgId), REF);
    const index = row ? parseOrgIndex(row) : undefined;
    const owner = orgOwners.get(orgId);
    if (index && owner !== index.ownerId)
      problems.push(`organization ${orgId}: index names ${index.ownerId}, held by ${owner ?? 'nobody'}`);
    if (!index && owner !== undefined)
      problems.push(`organization ${orgId}: held by ${owner} without an index`);
  }

  for (const [kind, ids] of [
    ['workflow', scope.workflows],
    ['credential', scope.credentials],
  ] as const) {
    for (const id of ids) {
      const row = await tables.directory.get(itemIndexPartition(kind, id), REF);
      const index = row ? parseItemIndex(row) : undefined;
      const counted = liveRows.get(`${kind}:${id}`) ?? [];
      if (index?.pending) problems.push(`${kind} ${id}: a change is still pending`);
      if (index?.deleting) problems.push(`${kind} ${id}: a delete is still pending`);
      const at = index?.committed;
      if (!at) {
        if (counted.length > 0)
          problems.push(`${kind} ${id}: deleted, yet counted at ${JSON.stringify(counted)}`);
        continue;
      }
      // Index rows from the first layout name no owner: it is the workspace's.
      const ownerOfIndex =
        at.ownerId ??
        (at.workspace.kind === 'personal'
          ? at.workspace.userId
          : parseOrgIndexRow(await tables.directory.get(orgIndexPartition(at.workspace.orgId), REF))
              ?.ownerId);
      const expected = { owner: ownerOfIndex, workspace: workspaceKey(at.workspace) };
      const where = counted.filter((c) => c.owner === expected.owner && c.workspace === expected.workspace);
      if (where.length !== 1 || counted.length !== 1)
        problems.push(
          `${kind} ${id}: index says ${JSON.stringify(expected)}, counted at ${JSON.stringify(counted)}`,
        );
    }
  }
  return problems;
}
