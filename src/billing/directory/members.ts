import { decideCreate } from '../access/decide.js';
import { wouldDenyAction } from '../access/would-deny.js';
import { limitReached } from '../errors.js';
import type { OrgId, OwnerId, UserId } from '../ids.js';
import { memberPrefix, memberRowKey, orgRowKey, SEATS_ROW, seatRowKey } from '../owner/keys.js';
import { memberRowSchema, type OrgRow, parseRow, seatRowSchema } from '../owner/rows.js';
import { type OwnerSnapshot, withVersion } from '../owner/snapshot.js';
import { seatCapRefusal } from '../seats.js';
import { answer, commit, write } from '../storage/commit.js';
import type { StoredEntity, TransactionAction } from '../store.js';
import { type DirectoryContext, orgNotFound, ownerOfOrg } from './context.js';

/**
 * Members of an organization live in its owner's partition only (no index: a member is always looked
 * up with the organization). A person's seat is counted once across all of the owner's organizations:
 * `seat|<userId>` counts their memberships, `s|o|seats` the people. Both change in the same
 * transaction as the membership, with the organization's row, so a DELETE of the organization orders
 * itself against every member PUT.
 */

export interface MemberInput {
  readonly role?: string | undefined;
  /** `false`: record without enforcing the seat limit (a backfill). */
  readonly enforce: boolean;
}

export interface MemberRecord {
  readonly orgId: OrgId;
  readonly userId: UserId;
  readonly role: string;
  readonly addedAt: string;
}

export type MemberPutOutcome = {
  readonly kind: 'created' | 'updated' | 'unchanged';
  readonly record: MemberRecord;
};

const parseSeat = (row: StoredEntity | undefined) => (row ? parseRow(seatRowSchema, row).orgs : 0);

function orgRowAction(snapshot: OwnerSnapshot, orgId: OrgId, change: Partial<OrgRow>): TransactionAction {
  const org = snapshot.orgs.get(orgId);
  if (!org) throw new Error(`organization ${orgId} vanished from the snapshot it was read in`);
  return { kind: 'update', rowKey: orgRowKey(orgId), props: { ...org.row, ...change }, etag: org.etag };
}

function seatsAction(snapshot: OwnerSnapshot, people: number): TransactionAction {
  const props = { seats: people };
  return snapshot.otherPeople.etag === undefined
    ? { kind: 'create', rowKey: SEATS_ROW, props }
    : { kind: 'update', rowKey: SEATS_ROW, props, etag: snapshot.otherPeople.etag };
}

/** A membership removed: the member row, the person's seat if it was their last, the org's count. */
function leaveActions(
  snapshot: OwnerSnapshot,
  ownerId: OwnerId,
  memberships: ReadonlyArray<{
    readonly orgId: OrgId;
    readonly userId: UserId;
    readonly seat: StoredEntity | undefined;
  }>,
): TransactionAction[] {
  const actions: TransactionAction[] = [];
  let people = snapshot.otherPeople.count;
  const leftPerOrg = new Map<OrgId, number>();
  for (const { orgId, userId, seat } of memberships) {
    actions.push({ kind: 'delete', rowKey: memberRowKey(orgId, userId) });
    leftPerOrg.set(orgId, (leftPerOrg.get(orgId) ?? 0) + 1);
    if (userId === ownerId) continue; // the owner always holds a seat
    const orgs = parseSeat(seat);
    if (orgs <= 1) {
      if (seat) actions.push({ kind: 'delete', rowKey: seatRowKey(userId) });
      people = Math.max(0, people - 1);
    } else if (seat) {
      actions.push({
        kind: 'update',
        rowKey: seatRowKey(userId),
        props: { orgs: orgs - 1 },
        etag: seat.etag,
      });
    }
  }
  if (people !== snapshot.otherPeople.count) actions.push(seatsAction(snapshot, people));
  for (const [orgId, left] of leftPerOrg) {
    const org = snapshot.orgs.get(orgId);
    if (org) actions.push(orgRowAction(snapshot, orgId, { members: Math.max(0, org.row.members - left) }));
  }
  return actions;
}

export function createMembers(ctx: DirectoryContext) {
  const table = ctx.ownerTable;

  async function requireOwner(orgId: OrgId): Promise<OwnerId> {
    const ownerId = await ownerOfOrg(ctx, orgId);
    if (ownerId === undefined) throw orgNotFound(orgId);
    return ownerId;
  }

  async function put(orgId: OrgId, userId: UserId, input: MemberInput): Promise<MemberPutOutcome> {
    const ownerId = await requireOwner(orgId);
    const key = memberRowKey(orgId, userId);
    let tookSeat = false;
    const outcome = await ctx.lanes.run(ownerId, () =>
      commit<MemberPutOutcome>(
        table,
        ownerId,
        async () => {
          const [snapshot, memberRow, seat] = await Promise.all([
            ctx.owners.read(ownerId),
            table.get(ownerId, key),
            userId === ownerId ? Promise.resolve(undefined) : table.get(ownerId, seatRowKey(userId)),
          ]);
          const org = snapshot.orgs.get(orgId);
          if (!org || org.row.deleting === true) {
            ctx.orgOwners.forget(orgId);
            throw orgNotFound(orgId);
          }
          if (memberRow) {
            const previous = parseRow(memberRowSchema, memberRow);
            const record = { orgId, userId, role: input.role ?? previous.role, addedAt: previous.addedAt };
            if (record.role === previous.role) return answer({ kind: 'unchanged', record });
            return write(
              [
                {
                  kind: 'update',
                  rowKey: key,
                  props: { role: record.role, addedAt: record.addedAt },
                  etag: memberRow.etag,
                },
              ],
              () => ({ kind: 'updated', record }),
            );
          }
          const newSeat = userId !== ownerId && seat === undefined;
          const capped = input.enforce ? seatCapRefusal(snapshot, newSeat) : undefined;
          if (capped) throw capped;
          const verdict = decideCreate(snapshot, ctx.catalog, await ctx.enforcement.current(), {
            kind: 'member',
            workspace: { kind: 'org', orgId },
            newSeat,
            enforce: input.enforce,
          });
          if (!verdict.allowed) throw limitReached(verdict.decision);
          const at = ctx.clock.now().toISOString();
          const record = { orgId, userId, role: input.role ?? 'member', addedAt: at };
          const actions: TransactionAction[] = [
            { kind: 'create', rowKey: key, props: { role: record.role, addedAt: record.addedAt } },
            orgRowAction(snapshot, orgId, { members: org.row.members + 1 }),
            ...verdict.wouldDeny.map((wd) => wouldDenyAction(wd, { subject: { orgId, userId }, at })),
          ];
          if (userId !== ownerId) {
            actions.push(
              seat
                ? {
                    kind: 'update',
                    rowKey: seatRowKey(userId),
                    props: { orgs: parseSeat(seat) + 1 },
                    etag: seat.etag,
                  }
                : { kind: 'create', rowKey: seatRowKey(userId), props: { orgs: 1 } },
            );
            if (newSeat) actions.push(seatsAction(snapshot, snapshot.otherPeople.count + 1));
          }
          return write(withVersion(snapshot, actions), () => {
            tookSeat = newSeat;
            return { kind: 'created', record };
          });
        },
        { what: `adding ${userId} to ${orgId}` },
      ),
    );
    if (tookSeat) await ctx.seatsChanged?.(ownerId);
    return outcome;
  }

  async function remove(orgId: OrgId, userId: UserId): Promise<{ readonly kind: 'deleted' | 'absent' }> {
    const ownerId = await ownerOfOrg(ctx, orgId);
    if (ownerId === undefined) return { kind: 'absent' };
    let freedSeat = false;
    const outcome = await ctx.lanes.run(ownerId, () =>
      commit<{ readonly kind: 'deleted' | 'absent' }>(
        table,
        ownerId,
        async () => {
          const [snapshot, memberRow, seat] = await Promise.all([
            ctx.owners.read(ownerId),
            table.get(ownerId, memberRowKey(orgId, userId)),
            userId === ownerId ? Promise.resolve(undefined) : table.get(ownerId, seatRowKey(userId)),
          ]);
          if (!memberRow) return answer({ kind: 'absent' });
          const actions = leaveActions(snapshot, ownerId, [{ orgId, userId, seat }]);
          return write(withVersion(snapshot, actions), () => {
            freedSeat = actions.some((a) => a.rowKey === SEATS_ROW);
            return { kind: 'deleted' };
          });
        },
        { what: `removing ${userId} from ${orgId}` },
      ),
    );
    if (freedSeat) await ctx.seatsChanged?.(ownerId);
    return outcome;
  }

  /** True for the organization's creator and for every member pushed by the platform. */
  async function isMember(orgId: OrgId, userId: UserId, ownerId?: OwnerId): Promise<boolean> {
    const owner = ownerId ?? (await ownerOfOrg(ctx, orgId));
    if (owner === undefined) return false;
    if (owner === userId) return true;
    return (await table.get(owner, memberRowKey(orgId, userId))) !== undefined;
  }

  /**
   * For a DELETE of the organization: removes its members a batch at a time. Returns how many were
   * removed in this call (0 when none are left).
   */
  async function removeBatch(orgId: OrgId, ownerId: OwnerId): Promise<number> {
    let freedSeat = false;
    const removed = await ctx.lanes.run(ownerId, () =>
      commit(
        table,
        ownerId,
        async () => {
          const rows = (await table.list(ownerId, { prefix: memberPrefix(orgId) })).slice(0, 30);
          if (rows.length === 0) return answer(0);
          const userIds = rows.map((row) => row.rowKey.slice(memberPrefix(orgId).length));
          const [snapshot, ...seats] = await Promise.all([
            ctx.owners.read(ownerId),
            ...userIds.map((userId) =>
              userId === ownerId ? Promise.resolve(undefined) : table.get(ownerId, seatRowKey(userId)),
            ),
          ]);
          const memberships = userIds.map((userId, i) => ({ orgId, userId, seat: seats[i] }));
          const actions = leaveActions(snapshot, ownerId, memberships);
          return write(withVersion(snapshot, actions), () => {
            freedSeat = actions.some((a) => a.rowKey === SEATS_ROW);
            return rows.length;
          });
        },
        { what: `removing the members of ${orgId}` },
      ),
    );
    if (freedSeat) await ctx.seatsChanged?.(ownerId);
    return removed;
  }

  return { put, remove, isMember, removeBatch };
}

export type Members = ReturnType<typeof createMembers>;
