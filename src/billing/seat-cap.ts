import { auditAction } from './audit/entry.js';
import type { OwnerId } from './ids.js';
import { SEAT_CAP_ROW } from './owner/keys.js';
import type { OwnerAccess } from './owner/owner-access.js';
import { definedProps } from './owner/rows.js';
import { withVersion } from './owner/snapshot.js';
import { answer, commit, write } from './storage/commit.js';
import type { EntityTable, TransactionAction } from './store.js';

/**
 * The billing owner's cap on billable seats (`PUT /api/billing/seats`). It lives in the snapshot
 * (`s|o|seatcap`) so a member PUT decides against it in the same read as the seat count, and changes
 * with the version like every other snapshot row. A cap below the people already in use refuses new
 * people only: nobody is removed.
 */
export interface SeatCaps {
  set(input: {
    readonly ownerId: OwnerId;
    readonly maxSeats: number | null;
    /** The token's `sub`. */
    readonly actor: string;
    /** The request's id, named as the audit row's cause. */
    readonly requestId: string;
  }): Promise<{ readonly maxSeats: number | null; readonly changed: boolean }>;
}

export function createSeatCaps(deps: {
  readonly table: EntityTable;
  readonly owners: Pick<OwnerAccess, 'read'>;
  readonly now: () => Date;
}): SeatCaps {
  const { table, owners } = deps;
  return {
    set({ ownerId, maxSeats, actor, requestId }) {
      return commit<{ readonly maxSeats: number | null; readonly changed: boolean }>(
        table,
        ownerId,
        async () => {
          const snapshot = await owners.read(ownerId);
          const before = snapshot.seatCap;
          if (before.maxSeats === maxSeats) return answer({ maxSeats, changed: false });
          const at = deps.now().toISOString();
          // No `maxSeats` property means no cap (Table Storage stores no nulls).
          const props = definedProps({ maxSeats, updatedAt: at });
          const actions: TransactionAction[] = [
            before.etag === undefined
              ? { kind: 'create', rowKey: SEAT_CAP_ROW, props }
              : { kind: 'update', rowKey: SEAT_CAP_ROW, props, etag: before.etag },
            auditAction(
              {
                at,
                kind: 'seat_cap_changed',
                actor: { kind: 'user', id: actor },
                cause: { kind: 'action', id: requestId, type: 'seats.cap' },
                before: { maxSeats: before.maxSeats },
                after: { maxSeats },
              },
              requestId,
            ),
          ];
          return write(withVersion(snapshot, actions), () => ({ maxSeats, changed: true }));
        },
        { what: `setting the seat cap of ${ownerId}` },
      );
    },
  };
}
