import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { auditAction } from './audit/entry.js';
import { type Catalog, PLAN_NAMES, type PlanName } from './catalog.js';
import type { Clock } from './clock.js';
import type { OwnerId } from './ids.js';
import { detectTier } from './lifecycle.js';
import { SUBSCRIPTION_ROW } from './owner/keys.js';
import type { OwnerAccess } from './owner/owner-access.js';
import { definedProps, parseRow } from './owner/rows.js';
import { type PaymentsGateway, SEAT_GENERATION_METADATA, type SubscriptionInfo } from './payments.js';
import type { SeatSyncTrigger } from './seat-sync-message.js';
import { billableSeats, perSeatQuantity } from './seats.js';
import { answer, commit, write } from './storage/commit.js';
import type { EntityTable, StoredEntity, TransactionAction } from './store.js';

/**
 * Per-seat subscriptions follow membership (docs/decisions/0005-seat-sync.md).
 *
 * A sync reads the owner's snapshot, computes the quantity from the count rows (`seats.ts`) and sets
 * Stripe to absolute numbers: an increase now, prorated and invoiced (`always_invoice`); a decrease at
 * the next renewal, as a schedule phase, with no credit for the rest of the period. What makes it safe
 * to run any number of times, in any order, from any process:
 *
 * - the **generation** of a computation is the snapshot's version when it was read (every membership
 *   change bumps it). The applied generation is stored in the `seatsync` row and stamped in the Stripe
 *   subscription's metadata (`seat_generation`); a computation older than either is refused, so a stale
 *   quantity never overwrites a newer one (Laravel Cashier #1201);
 * - one sync per owner at a time talks to Stripe: it holds a lease on the `seatsync` row (an ETag write),
 *   and another that finds the lease held is deferred, not dropped (stripe-node #292);
 * - a sync that finds its target already applied does nothing, without a Stripe call: a burst of N
 *   membership changes is N messages and one Stripe update;
 * - at most `maxUpdatesPerHour` Stripe updates per subscription in a rolling hour: more are deferred;
 * - nothing changes while Stripe says `past_due`, `unpaid` or `paused`: seats never collapse while
 *   payment is in trouble; the recovery event asks for a sync (`process-billing-event.ts`).
 */

export const SEAT_SYNC_ROW = 'seatsync';

/** Stripe states in which seats are left as they are until payment recovers. */
const HELD = new Set(['past_due', 'unpaid', 'paused']);
const SYNCABLE = new Set(['active', 'trialing']);
const HOUR_MS = 3_600_000;

const isPlanName = (value: string): value is PlanName => PLAN_NAMES.some((p) => p === value);

export type SeatSyncOutcome =
  | { readonly kind: 'not_per_seat' | 'no_subscription' }
  /** Payment is in trouble (Stripe's status): nothing changes until it recovers. */
  | { readonly kind: 'held'; readonly status: string }
  /** The target computed from this count was applied already (the rest of a burst). */
  | { readonly kind: 'already_applied'; readonly target: number }
  | { readonly kind: 'in_sync'; readonly quantity: number; readonly nextPeriod: number }
  /** A newer computation than this one was applied: this one is dropped, the newer stands. */
  | { readonly kind: 'stale'; readonly generation: number; readonly newer: number }
  | {
      readonly kind: 'applied';
      readonly subscriptionId: string;
      readonly generation: number;
      readonly before: { readonly now: number; readonly next: number };
      readonly after: { readonly now: number; readonly next: number };
    }
  /** Another sync holds the owner, or the budget is spent: run again in `delaySeconds`. */
  | { readonly kind: 'deferred'; readonly why: 'busy' | 'budget'; readonly delaySeconds: number };

export interface SeatSync {
  /** `actor`: the operator's `sub`, for the audit row of an `admin` sync. */
  run(ownerId: OwnerId, trigger: SeatSyncTrigger, actor?: string): Promise<SeatSyncOutcome>;
  /**
   * The drift repair (`seatSync` timer, `POST /api/ops/seats/sync`): every per-seat owner with a live
   * subscription (or one owner) compared with Stripe through `run`, repairs audited there.
   */
  sweep(input: {
    readonly ownerId?: OwnerId;
    readonly trigger: 'timer' | 'admin';
    /** The operator's `sub` for an `admin` sweep. */
    readonly actor?: string;
  }): Promise<SeatSweepReport>;
}

export interface SeatSweepReport {
  readonly examined: number;
  readonly outcomes: Readonly<Record<SeatSyncOutcome['kind'], number>>;
  /** What was changed in Stripe. */
  readonly repaired: ReadonlyArray<{
    readonly ownerId: OwnerId;
    readonly subscriptionId: string;
    readonly before: { readonly now: number; readonly next: number };
    readonly after: { readonly now: number; readonly next: number };
  }>;
  readonly failures: ReadonlyArray<{
    readonly ownerId: OwnerId;
    readonly code: string;
    readonly message: string;
  }>;
}

const syncRowSchema = z.object({
  leaseId: z.string().optional(),
  leaseUntil: z.string().optional(),
  generation: z.number().int().optional(),
  target: z.number().int().optional(),
  /** Instants of the Stripe updates of the last hour (JSON array), for the budget. */
  updates: z.string().optional(),
});
type SyncRow = z.infer<typeof syncRowSchema>;

const updatesOf = (row: SyncRow): string[] => {
  const parsed = z.array(z.string()).safeParse(JSON.parse(row.updates ?? '[]'));
  return parsed.success ? parsed.data : [];
};

export interface SeatSyncOptions {
  readonly maxUpdatesPerHour: number;
  readonly leaseSeconds: number;
}

export function createSeatSync(deps: {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  readonly owners: Pick<OwnerAccess, 'read'>;
  readonly payments: PaymentsGateway;
  readonly catalog: Catalog;
  readonly clock: Clock;
  readonly options: SeatSyncOptions;
  /** Runs a deferred sync again later (the queue); without it a sweep leaves it to the next sweep. */
  readonly later?: (ownerId: OwnerId, delaySeconds: number) => Promise<void>;
}): SeatSync {
  const { table, owners, payments, catalog, clock, options } = deps;

  const rowAction = (row: StoredEntity | undefined, props: SyncRow): TransactionAction => {
    const clean = definedProps(props);
    return row
      ? { kind: 'update', rowKey: SEAT_SYNC_ROW, props: clean, etag: row.etag }
      : { kind: 'create', rowKey: SEAT_SYNC_ROW, props: clean };
  };

  type Claim =
    | { readonly kind: 'claimed'; readonly leaseId: string; readonly recent: readonly string[] }
    | Extract<SeatSyncOutcome, { kind: 'deferred' | 'stale' | 'already_applied' }>;

  /** Takes the owner's lease, unless the target is applied, a newer one was, or the owner is busy. */
  function claim(ownerId: OwnerId, generation: number, target: number, force: boolean): Promise<Claim> {
    return commit<Claim>(
      table,
      ownerId,
      async () => {
        const row = await table.get(ownerId, SEAT_SYNC_ROW);
        const stored = row ? parseRow(syncRowSchema, row) : {};
        const now = clock.now();
        if (stored.generation !== undefined && stored.generation > generation)
          return answer({ kind: 'stale', generation, newer: stored.generation });
        if (!force && stored.target === target && stored.generation !== undefined)
          return answer({ kind: 'already_applied', target });
        const leaseUntil = stored.leaseUntil ? Date.parse(stored.leaseUntil) : 0;
        if (stored.leaseId && leaseUntil > now.getTime()) {
          const delaySeconds = Math.max(1, Math.ceil((leaseUntil - now.getTime()) / 1000));
          return answer({ kind: 'deferred', why: 'busy', delaySeconds });
        }
        const recent = updatesOf(stored).filter((at) => Date.parse(at) > now.getTime() - HOUR_MS);
        const oldest = recent[0];
        if (recent.length >= options.maxUpdatesPerHour && oldest !== undefined) {
          const delaySeconds = Math.max(1, Math.ceil((Date.parse(oldest) + HOUR_MS - now.getTime()) / 1000));
          return answer({ kind: 'deferred', why: 'budget', delaySeconds });
        }
        const leaseId = randomUUID();
        const props: SyncRow = {
          ...stored,
          leaseId,
          leaseUntil: new Date(now.getTime() + options.leaseSeconds * 1000).toISOString(),
          updates: JSON.stringify(recent),
        };
        return write([rowAction(row, props)], () => ({ kind: 'claimed', leaseId, recent }));
      },
      { what: `claiming the seat sync of ${ownerId}` },
    );
  }

  /** Gives the lease back, recording what was applied (and its audit row) when something was. */
  function release(
    ownerId: OwnerId,
    leaseId: string,
    applied:
      | {
          readonly generation: number;
          readonly target: number;
          readonly updated: boolean;
          readonly audit?: TransactionAction;
        }
      | undefined,
  ): Promise<void> {
    return commit<void>(
      table,
      ownerId,
      async () => {
        const row = await table.get(ownerId, SEAT_SYNC_ROW);
        if (!row) return answer(undefined);
        const stored = parseRow(syncRowSchema, row);
        // A lease that expired and was taken by another sync is theirs: record nothing over it.
        if (stored.leaseId !== leaseId) return answer(undefined);
        const now = clock.now().toISOString();
        const updates = updatesOf(stored);
        const props: SyncRow = {
          ...(applied
            ? { generation: applied.generation, target: applied.target }
            : { generation: stored.generation, target: stored.target }),
          updates: JSON.stringify(applied?.updated ? [...updates, now] : updates),
        };
        return write([rowAction(row, props), ...(applied?.audit ? [applied.audit] : [])], () => undefined);
      },
      { what: `recording the seat sync of ${ownerId}` },
    );
  }

  /** The quantities Stripe should have, from the quantities it has and the target. */
  function wanted(sub: SubscriptionInfo, target: number) {
    const item = sub.items[0];
    if (!item) return undefined;
    const scheduled = sub.scheduledPhase;
    const current = { now: item.quantity, next: scheduled?.quantity ?? item.quantity };
    // A pending change to a plan not billed per seat keeps its own quantity.
    const nextTier = scheduled ? detectTier(scheduled.price, catalog) : undefined;
    const nextPerSeat = scheduled === null || (nextTier !== undefined && catalog[nextTier.plan].perSeat);
    // Increases now (the people are here now); decreases wait for the renewal (paid for this period).
    const want = { now: Math.max(current.now, target), next: nextPerSeat ? target : current.next };
    return { current, want };
  }

  async function run(ownerId: OwnerId, trigger: SeatSyncTrigger, actor?: string): Promise<SeatSyncOutcome> {
    const snapshot = await owners.read(ownerId);
    const state = snapshot.subscription?.state;
    if (!state?.stripeSubscriptionId || state.status === 'canceled') return { kind: 'no_subscription' };
    const plan = catalog[state.plan];
    if (!plan.perSeat) return { kind: 'not_per_seat' };
    const generation = snapshot.version.value;
    const target = perSeatQuantity(plan, billableSeats(snapshot));
    // The timer and operators compare with Stripe whatever was recorded: that is how drift is found.
    const force = trigger === 'timer' || trigger === 'admin' || trigger === 'recovery';
    const claimed = await claim(ownerId, generation, target, force);
    if (claimed.kind !== 'claimed') return claimed;
    let applied: Parameters<typeof release>[2];
    try {
      const sub = await payments.getSubscription(state.stripeSubscriptionId);
      if (HELD.has(sub.status)) return { kind: 'held', status: sub.status };
      if (!SYNCABLE.has(sub.status)) return { kind: 'no_subscription' };
      const stamped = Number.parseInt(sub.metadata[SEAT_GENERATION_METADATA] ?? '', 10);
      if (Number.isFinite(stamped) && stamped > generation)
        return { kind: 'stale', generation, newer: stamped };
      const plan = wanted(sub, target);
      if (!plan) return { kind: 'no_subscription' };
      const { current, want } = plan;
      if (current.now === want.now && current.next === want.next) {
        applied = { generation, target, updated: false };
        return { kind: 'in_sync', quantity: current.now, nextPeriod: current.next };
      }
      await payments.setSeats({
        subscription: sub,
        quantityNow: want.now,
        quantityNext: want.next,
        generation,
        // The transition, not only the target: a retry of this change is one change in Stripe, while a
        // repair of drift back to a target applied before (same generation) is a new one.
        idempotencyKey: `seats-${sub.id}-g${generation}-${current.now}.${current.next}-${want.now}.${want.next}`,
      });
      const at = clock.now().toISOString();
      applied = {
        generation,
        target,
        updated: true,
        audit: auditAction(
          {
            at,
            kind: 'seats_synced',
            // An operator's sync names the operator's role; every other sync is the seat sync's own.
            actor:
              trigger === 'admin'
                ? { kind: 'admin', id: actor ?? 'admin' }
                : { kind: 'seat_sync', id: 'seat_sync' },
            cause: { kind: 'seat_sync', id: `seatsync-${generation}-${claimed.leaseId}`, type: trigger },
            before: current,
            after: want,
            details: { subscriptionId: sub.id, generation },
          },
          `seatsync-${generation}-${claimed.leaseId}`,
        ),
      };
      return { kind: 'applied', subscriptionId: sub.id, generation, before: current, after: want };
    } finally {
      await release(ownerId, claimed.leaseId, applied);
    }
  }

  async function sweep(input: {
    readonly ownerId?: OwnerId;
    readonly trigger: 'timer' | 'admin';
    readonly actor?: string;
  }): Promise<SeatSweepReport> {
    const outcomes: Record<SeatSyncOutcome['kind'], number> = {
      not_per_seat: 0,
      no_subscription: 0,
      held: 0,
      already_applied: 0,
      in_sync: 0,
      stale: 0,
      applied: 0,
      deferred: 0,
    };
    const repaired: Array<SeatSweepReport['repaired'][number]> = [];
    const failures: Array<SeatSweepReport['failures'][number]> = [];
    let examined = 0;
    const one = async (ownerId: OwnerId) => {
      examined++;
      try {
        const outcome = await run(ownerId, input.trigger, input.actor);
        outcomes[outcome.kind]++;
        if (outcome.kind === 'applied')
          repaired.push({
            ownerId,
            subscriptionId: outcome.subscriptionId,
            before: outcome.before,
            after: outcome.after,
          });
        if (outcome.kind === 'deferred') await deps.later?.(ownerId, outcome.delaySeconds);
      } catch (error) {
        // One owner's failure (Stripe or storage) does not stop the others; the next sweep retries it.
        const code =
          typeof error === 'object' && error !== null && 'code' in error ? String(error.code) : 'failed';
        failures.push({ ownerId, code, message: error instanceof Error ? error.message : String(error) });
      }
    };
    if (input.ownerId !== undefined) {
      await one(input.ownerId);
      return { examined, outcomes, repaired, failures };
    }
    // One row per owner that ever subscribed; the row key filter runs in the service.
    for await (const row of table.scan({ rowKeys: [SUBSCRIPTION_ROW], select: ['plan', 'status'] })) {
      const plan = row.props.plan;
      const status = row.props.status;
      if (typeof plan !== 'string' || !isPlanName(plan) || !catalog[plan].perSeat) continue;
      if (status === 'canceled' || status === 'incomplete') continue;
      await one(row.partitionKey);
    }
    return { examined, outcomes, repaired, failures };
  }

  return { run, sweep };
}
