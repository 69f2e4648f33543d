import type { Clock } from '../clock.js';
import type { EntityTable } from '../store.js';
import { dueMonth, prunableKind, retentionPartition } from './policy.js';

/**
 * The billing table, with one addition: before a transaction creates a row that will one day be pruned
 * (a consume or grant marker, a ledger row), the owner is listed in the retention index of the month the
 * row falls due (`retention|<YYYY-MM>` / `<ownerId>`), so the pruning job finds owners without scanning the
 * table. Written before the transaction, as rollover's index is: a row never exists unindexed, and an
 * index row whose transaction failed only costs the job one empty visit.
 *
 * Every writer of those rows (metering, credits, credit purchases) gets this without knowing of it, and a
 * process writes one index row per owner and month at most (remembered here), so the hot path pays one
 * small upsert per owner a month.
 */
export function withRetentionIndex(
  table: EntityTable,
  deps: {
    readonly clock: Clock;
    readonly retentionDays: number;
    /** Index rows remembered as written before the memory is cleared. @default 50000 */
    readonly memoSize?: number;
  },
): EntityTable {
  const written = new Set<string>();
  const memoSize = deps.memoSize ?? 50_000;
  return {
    ...table,
    async transact(partitionKey, actions) {
      const now = deps.clock.now();
      const months = new Set<string>();
      for (const action of actions) {
        const kind = action.kind === 'create' ? prunableKind(action.rowKey) : undefined;
        if (kind !== undefined) months.add(dueMonth(kind, now, deps.retentionDays));
      }
      await Promise.all(
        [...months].map(async (month) => {
          const id = `${month}|${partitionKey}`;
          if (written.has(id)) return;
          await table.upsert(retentionPartition(month), partitionKey, { ownerId: partitionKey });
          if (written.size >= memoSize) written.clear();
          written.add(id);
        }),
      );
      return table.transact(partitionKey, actions);
    },
  };
}
