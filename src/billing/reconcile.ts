import { randomBytes } from 'node:crypto';
import { recordReconcilerRepair } from '../telemetry/metrics.js';
import type { Clock } from './clock.js';
import type { CreditPurchases } from './credit-purchases.js';
import type { Customers } from './customers.js';
import { HANDLED_EVENT_TYPES, subjectOf } from './event-ref.js';
import { describeFailure } from './failures.js';
import type { OwnerId } from './ids.js';
import type { SubscriptionSync, SyncCause } from './lifecycle.js';
import { compactInstant, SUBSCRIPTION_ROW } from './owner/keys.js';
import type { CheckoutSessionInfo, Page, PaymentsGateway } from './payments.js';
import {
  claimState,
  type FeedProgress,
  parseState,
  RECONCILE_PARTITION,
  type ReconcileState,
  RunSupersededError,
  runRowKey,
  STATE_ROW,
} from './reconcile-state.js';
import type { EntityTable } from './store.js';
import { LIVE_STATUSES, type SubscriptionStatus } from './subscription.js';

/**
 * The reconciler: finds where our state parted from Stripe's (an event lost to an outage, a webhook
 * never delivered) and repairs it through the same apply path as events (`SubscriptionSync`,
 * `CreditPurchases`), so a repair is exactly as safe, and audited, as the event it stands in for
 * (cause `reconcile`, actor `reconciler`, the run id as cause id).
 *
 * Each run makes three passes, each bounded to `maxItems` and resumable from the state row
 * (`reconcile-state.ts`):
 * 1. events: Stripe events about subscriptions, schedules, invoices and checkouts created since the
 *    watermark (less an overlap, since Stripe creates and lists events non-atomically); every distinct
 *    customer they name is synced. This finds owners we hold as free or ended whom Stripe has live.
 * 2. live owners: every owner whose subscription row says a live status is synced, a slice per run,
 *    resuming where the last run stopped. This finds what no listed event names (older than the
 *    watermark, or a subscription deleted behind us).
 * 3. paid credit sessions since the watermark (less the overlap): each is offered to the grant, which
 *    grants once per session whatever calls it.
 * A run with an owner id syncs that owner and grants its sessions only, and moves no watermark.
 */
export interface Reconciler {
  run(request?: ReconcileRequest): Promise<ReconcileReport>;
}

export interface ReconcileRequest {
  /** Only this owner (its customer); the state row and watermarks are left alone. */
  readonly ownerId?: OwnerId;
  /** Who asked, for the run's summary row: `timer`, or `admin:<userId>`. @default 'timer' */
  readonly actor?: string;
}

export interface SyncCounts {
  /** Customers (or owners) re-read from Stripe. */
  readonly examined: number;
  /** Our state differed and was repaired (audited). */
  readonly applied: number;
  readonly unchanged: number;
  /** Already applied under this run's id (the same owner reached twice). */
  readonly duplicate: number;
  /** A customer that belongs to no owner we know (not ours): skipped. */
  readonly unknownCustomers: number;
  readonly failed: number;
}

export interface GrantCounts {
  readonly examined: number;
  readonly granted: number;
  /** Granted before (by the event, or an earlier run). */
  readonly alreadyGranted: number;
  /** Paid, but not a purchase we grant for (see `CreditPurchases`). */
  readonly notGranted: number;
  /** No customer, or a customer that belongs to no owner we know. */
  readonly unknownCustomers: number;
  readonly failed: number;
}

export interface ReconcileReport {
  readonly runId: string;
  readonly scope:
    | { readonly kind: 'all' }
    | { readonly kind: 'owner'; readonly ownerId: OwnerId; readonly customerId: string | null };
  /**
   * `completed`: every pass reached its end. `partial`: a bound, the time budget or a failure stopped a
   * pass, and the next run continues from there. `busy`: another run holds the state; nothing was done.
   * `superseded`: this run's lease ran out and another run took over; it stopped (its repairs stand).
   */
  readonly outcome: 'completed' | 'partial' | 'busy' | 'superseded';
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly syncs: { readonly events: SyncCounts; readonly owners: SyncCounts };
  readonly credits: GrantCounts;
  /** What was repaired. */
  readonly changes: readonly ReconcileChange[];
  readonly grants: readonly {
    readonly ownerId: OwnerId;
    readonly sessionId: string;
    readonly credits: number;
  }[];
  /** What failed (at most `MAX_FAILURES`); a failure of Stripe or storage stops its pass for this run. */
  readonly failures: readonly ReconcileFailure[];
  /** The watermarks after the run (null before the first finished pass). */
  readonly watermarks: { readonly events: string | null; readonly sessions: string | null };
  /** For `busy`: the run that holds the state. */
  readonly heldBy?: { readonly runId: string; readonly leaseUntil: string | null };
}

export interface ReconcileChange {
  readonly ownerId: OwnerId;
  readonly customerId: string;
  /** Which pass found it. */
  readonly foundBy: 'events' | 'live_owners' | 'owner';
  readonly plan: string;
  readonly status: SubscriptionStatus;
}

export interface ReconcileFailure {
  readonly pass: 'events' | 'live_owners' | 'owner' | 'sessions';
  /** The customer, owner, session, or `list` for a page that could not be read. */
  readonly id: string;
  readonly code: string;
  readonly message: string;
}

export interface ReconcilerOptions {
  /** Customers, live owners and sessions each, at most, per run. @default 500 */
  readonly maxItems?: number;
  /** @default 300 */
  readonly overlapSeconds?: number;
  /** How far back the first run and an owner's run look. @default 168 */
  readonly lookbackHours?: number;
  /** Start no new page or owner after this long; the next run continues. @default 240000 */
  readonly budgetMs?: number;
  /** Items asked for per page of a Stripe list (Stripe's maximum is 100). @default 100 */
  readonly pageSize?: number;
  /** @default `rc-<compact time>-<8 hex>` */
  readonly newRunId?: (now: Date) => string;
}

export interface ReconcilerDeps {
  /** The owner-partitioned `billing` table (the reconciler's partition lives beside the owners'). */
  readonly table: EntityTable;
  readonly payments: Pick<PaymentsGateway, 'listEvents' | 'listPaidPaymentSessions'>;
  readonly customers: Pick<Customers, 'ownerOf' | 'customerOf'>;
  readonly sync: SubscriptionSync;
  readonly purchases: Pick<CreditPurchases, 'grantForSession'>;
  readonly clock: Clock;
  readonly options?: ReconcilerOptions;
}

/**
 * The event types whose customers a run re-reads: everything the processor applies through a
 * subscription sync, less `trial_will_end` (a reminder that changes nothing), because Stripe's `types`
 * filter takes at most 20 names and no wildcards. Less `invoice.overdue` too: only contract invoices
 * (`send_invoice`) have a due date, and the `contractInvoicing` timer re-reads those itself.
 */
export const RECONCILE_EVENT_TYPES: readonly string[] = HANDLED_EVENT_TYPES.filter((type) => {
  const subject = subjectOf(type);
  return (
    type !== 'customer.subscription.trial_will_end' &&
    type !== 'invoice.overdue' &&
    (subject === 'subscription' || subject === 'schedule' || subject === 'invoice' || subject === 'checkout')
  );
});

export const MAX_FAILURES = 50;
/** The live-owner sweep saves its place this often, so a run that dies mid-sweep loses little. */
const OWNER_CHECKPOINT_EVERY = 50;
const HOUR_MS = 3_600_000;

type Step = 'continue' | 'stop';
type FailureClass = 'unknown_customer' | 'systemic' | 'item';

/**
 * How a failure of one item bears on the pass. A customer that is not ours is skipped. An outage (429,
 * 5xx, network), refused credentials or contention is not about the item: the pass stops where it is,
 * so the next run retries the same page instead of moving past it. Anything else is about the item
 * (an unmapped price, a corrupt row): it is recorded and the pass goes on, so one bad customer cannot
 * hold every other repair back.
 */
export function classifyFailure(error: unknown): FailureClass {
  // One classification for the processor and the reconciler (`failures.ts`); here it decides whether a
  // pass can go on. An outage, or credentials Stripe refuses, fails every next call too: stop the pass.
  // A failure about one customer (or a bug, `unexpected`) is recorded and the pass goes on.
  const failure = describeFailure(error);
  if (failure.code === 'unknown_customer') return 'unknown_customer';
  if (failure.code === 'payments_authentication') return 'systemic';
  return failure.kind === 'transient' && failure.code !== 'unexpected' ? 'systemic' : 'item';
}

const failureCode = (error: unknown): string => describeFailure(error).code;

const emptySyncs = () => ({
  examined: 0,
  applied: 0,
  unchanged: 0,
  duplicate: 0,
  unknownCustomers: 0,
  failed: 0,
});
const emptyGrants = () => ({
  examined: 0,
  granted: 0,
  alreadyGranted: 0,
  notGranted: 0,
  unknownCustomers: 0,
  failed: 0,
});

export function createReconciler(deps: ReconcilerDeps): Reconciler {
  const { table, payments, customers, sync, purchases, clock } = deps;
  const maxItems = Math.max(1, deps.options?.maxItems ?? 500);
  const overlapMs = (deps.options?.overlapSeconds ?? 300) * 1000;
  const lookbackMs = (deps.options?.lookbackHours ?? 168) * HOUR_MS;
  const budgetMs = deps.options?.budgetMs ?? 240_000;
  const pageSize = Math.min(100, Math.max(1, deps.options?.pageSize ?? 100));
  // A run that stops checkpointing for this long is presumed dead, and the next run takes over.
  const leaseMs = budgetMs + 60_000;
  const newRunId =
    deps.options?.newRunId ?? ((now: Date) => `rc-${compactInstant(now)}-${randomBytes(4).toString('hex')}`);

  /** One run's tallies and findings. */
  function tally(runId: string) {
    const syncs = { events: emptySyncs(), owners: emptySyncs() };
    const credits = emptyGrants();
    const changes: ReconcileChange[] = [];
    const grants: Array<{ ownerId: OwnerId; sessionId: string; credits: number }> = [];
    const failures: ReconcileFailure[] = [];
    /** Owners synced in this run: a second pass reaching one again skips it. */
    const syncedOwners = new Set<OwnerId>();
    const syncedCustomers = new Set<string>();
    const cause: SyncCause = { kind: 'reconcile', id: runId, type: 'reconcile' };

    const fail = (pass: ReconcileFailure['pass'], id: string, error: unknown) => {
      if (failures.length < MAX_FAILURES) {
        failures.push({
          pass,
          id,
          code: failureCode(error),
          message: error instanceof Error ? error.message : String(error),
        });
      }
    };

    /** Re-reads one customer and applies what Stripe says. */
    const syncOne = async (
      customerId: string,
      foundBy: ReconcileChange['foundBy'],
      counts: ReturnType<typeof emptySyncs>,
    ): Promise<Step> => {
      syncedCustomers.add(customerId);
      counts.examined++;
      try {
        const outcome = await sync.syncCustomer(customerId, cause);
        syncedOwners.add(outcome.ownerId);
        if (outcome.kind === 'applied') {
          counts.applied++;
          recordReconcilerRepair('subscription');
          changes.push({
            ownerId: outcome.ownerId,
            customerId,
            foundBy,
            plan: outcome.state.plan,
            status: outcome.state.status,
          });
        } else if (outcome.kind === 'unchanged') counts.unchanged++;
        else counts.duplicate++;
        return 'continue';
      } catch (error) {
        const kind = classifyFailure(error);
        if (kind === 'unknown_customer') {
          counts.unknownCustomers++;
          return 'continue';
        }
        counts.failed++;
        fail(foundBy, customerId, error);
        return kind === 'systemic' ? 'stop' : 'continue';
      }
    };

    /** Offers one paid session to the grant (which grants once per session, whoever asks). */
    const grantOne = async (session: CheckoutSessionInfo, onlyOwner?: OwnerId): Promise<Step> => {
      credits.examined++;
      try {
        const ownerId = session.customerId === null ? undefined : await customers.ownerOf(session.customerId);
        if (ownerId === undefined) {
          credits.unknownCustomers++;
          return 'continue';
        }
        if (onlyOwner !== undefined && ownerId !== onlyOwner) return 'continue';
        const outcome = await purchases.grantForSession(ownerId, session, cause);
        if (outcome.kind === 'granted') {
          credits.granted++;
          recordReconcilerRepair('credit_grant');
          grants.push({ ownerId, sessionId: session.id, credits: outcome.credits });
        } else if (outcome.kind === 'duplicate') credits.alreadyGranted++;
        else credits.notGranted++;
        return 'continue';
      } catch (error) {
        credits.failed++;
        fail('sessions', session.id, error);
        return classifyFailure(error) === 'systemic' ? 'stop' : 'continue';
      }
    };

    return {
      syncs,
      credits,
      changes,
      grants,
      failures,
      syncedOwners,
      syncedCustomers,
      fail,
      syncOne,
      grantOne,
    };
  }
  type Tally = ReturnType<typeof tally>;

  /**
   * Pages through one of Stripe's time-ordered lists from `progress`, handling each item, until the list
   * ends (the watermark moves to when the pass began), the item budget or time runs out, or a systemic
   * failure stops it (the place before the failing page is kept, so the page is read again next run).
   */
  async function feedPass<T>(input: {
    readonly name: 'events' | 'sessions';
    readonly progress: FeedProgress;
    readonly now: Date;
    readonly outOfTime: () => boolean;
    readonly list: (since: Date, cursor: string | null, limit: number) => Promise<Page<T>>;
    /** Handles one item; `spent` says whether it used the budget (a customer seen before does not). */
    readonly handle: (item: T) => Promise<{ readonly step: Step; readonly spent: boolean }>;
    readonly save: (progress: FeedProgress) => Promise<void>;
    readonly tally: Tally;
  }): Promise<{ readonly progress: FeedProgress; readonly complete: boolean }> {
    const { progress: start, now } = input;
    const since =
      start.since ??
      new Date(
        start.watermark === null ? now.getTime() - lookbackMs : Date.parse(start.watermark) - overlapMs,
      ).toISOString();
    const passStart = start.passStart ?? now.toISOString();
    let progress: FeedProgress = { ...start, since, passStart };
    let remaining = maxItems;
    while (true) {
      if (remaining === 0 || input.outOfTime()) {
        await input.save(progress);
        return { progress, complete: false };
      }
      let page: Page<T>;
      try {
        // Never more items than budget left: each item spends at most one, so a page is always finished
        // and the run can stop on a page boundary, the only place a cursor can resume from.
        page = await input.list(new Date(since), progress.cursor, Math.min(pageSize, remaining));
      } catch (error) {
        input.tally.fail(input.name, 'list', error);
        // A cursor Stripe no longer accepts would stop the pass for good: start it again from `since`.
        if (classifyFailure(error) === 'item') progress = { ...progress, cursor: null };
        await input.save(progress);
        return { progress, complete: false };
      }
      for (const item of page.items) {
        const { step, spent } = await input.handle(item);
        if (spent) remaining--;
        if (step === 'stop') {
          await input.save(progress);
          return { progress, complete: false };
        }
      }
      if (page.nextCursor === null) {
        progress = { watermark: passStart, since: null, cursor: null, passStart: null };
        await input.save(progress);
        return { progress, complete: true };
      }
      progress = { ...progress, cursor: page.nextCursor };
      await input.save(progress);
    }
  }

  /** Syncs owners whose subscription row says live, from where the last sweep stopped. */
  async function ownersPass(input: {
    readonly owners: ReconcileState['owners'];
    readonly outOfTime: () => boolean;
    readonly save: (owners: ReconcileState['owners']) => Promise<void>;
    readonly tally: Tally;
  }): Promise<{ readonly owners: ReconcileState['owners']; readonly complete: boolean }> {
    const { tally: t } = input;
    let after = input.owners.after;
    let remaining = maxItems;
    let unsaved = 0;
    let complete = true;
    // One row per owner that ever subscribed, two properties each. Table Storage filters on the row key
    // server-side, so no other row leaves the service; resuming `partitionsAfter` the last owner done
    // spreads one sweep of the table over as many runs as it takes.
    const rows = table.scan({
      rowKeys: [SUBSCRIPTION_ROW],
      select: ['status', 'stripeCustomerId'],
      ...(after === null ? {} : { partitionsAfter: after }),
    });
    for await (const row of rows) {
      if (remaining === 0 || input.outOfTime()) {
        complete = false;
        break;
      }
      const ownerId = row.partitionKey;
      const status = row.props.status;
      if (typeof status === 'string' && LIVE_STATUSES.has(status) && !t.syncedOwners.has(ownerId)) {
        remaining--;
        const stored = row.props.stripeCustomerId;
        const customerId = typeof stored === 'string' ? stored : await customers.customerOf(ownerId);
        if (customerId === undefined) {
          // A live row without a customer was written by hand: nothing in Stripe to compare it with.
          t.syncs.owners.examined++;
          t.syncs.owners.unknownCustomers++;
        } else if (!t.syncedCustomers.has(customerId)) {
          if ((await t.syncOne(customerId, 'live_owners', t.syncs.owners)) === 'stop') {
            complete = false;
            break;
          }
        }
      }
      after = ownerId;
      if (++unsaved >= OWNER_CHECKPOINT_EVERY) {
        await input.save({ ...input.owners, after });
        unsaved = 0;
      }
    }
    const owners = complete
      ? { after: null, sweeps: input.owners.sweeps + 1 }
      : { after, sweeps: input.owners.sweeps };
    await input.save(owners);
    return { owners, complete };
  }

  async function runAll(runId: string, now: Date, outOfTime: () => boolean, t: Tally) {
    const claim = await claimState(table, runId, now, leaseMs);
    if (claim.kind === 'busy') return { kind: 'busy' as const, holder: claim.holder };
    let state = claim.state;
    const save = async (next: ReconcileState) => {
      state = next;
      const lease = new Date(clock.now().getTime() + leaseMs).toISOString();
      await claim.save({ ...next, run: next.run && { ...next.run, leaseUntil: lease } });
    };
    let complete = true;
    try {
      const events = await feedPass({
        name: 'events',
        progress: state.events,
        now,
        outOfTime,
        tally: t,
        list: (since, cursor, limit) =>
          payments.listEvents({ since, types: RECONCILE_EVENT_TYPES, cursor, limit }),
        async handle(event) {
          const customerId = event.customerId;
          if (customerId === null || t.syncedCustomers.has(customerId))
            return { step: 'continue', spent: false };
          return { step: await t.syncOne(customerId, 'events', t.syncs.events), spent: true };
        },
        save: (progress) => save({ ...state, events: progress }),
      });
      complete &&= events.complete;
      const owners = await ownersPass({
        owners: state.owners,
        outOfTime,
        tally: t,
        save: (next) => save({ ...state, owners: next }),
      });
      complete &&= owners.complete;
      const sessions = await feedPass({
        name: 'sessions',
        progress: state.sessions,
        now,
        outOfTime,
        tally: t,
        list: (since, cursor, limit) => payments.listPaidPaymentSessions({ since, cursor, limit }),
        handle: async (session) => ({ step: await t.grantOne(session), spent: true }),
        save: (progress) => save({ ...state, sessions: progress }),
      });
      complete &&= sessions.complete;
      const finishedAt = clock.now().toISOString();
      await claim.save({ ...state, run: state.run && { ...state.run, leaseUntil: null, finishedAt } });
    } catch (error) {
      if (error instanceof RunSupersededError) return { kind: 'superseded' as const, state };
      throw error;
    }
    return { kind: complete ? ('completed' as const) : ('partial' as const), state };
  }

  async function runOwner(ownerId: OwnerId, now: Date, outOfTime: () => boolean, t: Tally) {
    const customerId = (await customers.customerOf(ownerId)) ?? null;
    if (customerId === null) return { customerId, complete: true };
    if ((await t.syncOne(customerId, 'owner', t.syncs.owners)) === 'stop')
      return { customerId, complete: false };
    // Sessions are listed for every customer (Stripe cannot filter paid sessions by customer here), so
    // this owner's are picked out of at most `maxItems` of the most recent ones.
    const since = new Date(now.getTime() - lookbackMs);
    let cursor: string | null = null;
    let remaining = maxItems;
    while (remaining > 0 && !outOfTime()) {
      let page: Page<CheckoutSessionInfo>;
      try {
        page = await payments.listPaidPaymentSessions({
          since,
          cursor,
          limit: Math.min(pageSize, remaining),
        });
      } catch (error) {
        t.fail('sessions', 'list', error);
        return { customerId, complete: false };
      }
      for (const session of page.items) {
        remaining--;
        if (session.customerId !== customerId) continue;
        if ((await t.grantOne(session, ownerId)) === 'stop') return { customerId, complete: false };
      }
      if (page.nextCursor === null) return { customerId, complete: true };
      cursor = page.nextCursor;
    }
    return { customerId, complete: false };
  }

  return {
    async run(request = {}) {
      const started = Date.now();
      const outOfTime = () => Date.now() - started >= budgetMs;
      const now = clock.now();
      const runId = newRunId(now);
      const t = tally(runId);
      const base = {
        runId,
        startedAt: now.toISOString(),
        syncs: t.syncs,
        credits: t.credits,
        changes: t.changes,
        grants: t.grants,
        failures: t.failures,
      };

      let report: ReconcileReport;
      if (request.ownerId !== undefined) {
        const scoped = await runOwner(request.ownerId, now, outOfTime, t);
        const watermarks = await currentWatermarks();
        report = {
          ...base,
          scope: { kind: 'owner', ownerId: request.ownerId, customerId: scoped.customerId },
          outcome: scoped.complete && t.failures.length === 0 ? 'completed' : 'partial',
          finishedAt: clock.now().toISOString(),
          watermarks,
        };
      } else {
        const result = await runAll(runId, now, outOfTime, t);
        if (result.kind === 'busy') {
          return {
            ...base,
            scope: { kind: 'all' },
            outcome: 'busy',
            finishedAt: clock.now().toISOString(),
            watermarks: await currentWatermarks(),
            heldBy: { runId: result.holder?.id ?? 'unknown', leaseUntil: result.holder?.leaseUntil ?? null },
          };
        }
        report = {
          ...base,
          scope: { kind: 'all' },
          outcome: result.kind,
          finishedAt: clock.now().toISOString(),
          watermarks: { events: result.state.events.watermark, sessions: result.state.sessions.watermark },
        };
      }
      await writeSummary(report, request.actor ?? 'timer');
      return report;
    },
  };

  async function currentWatermarks(): Promise<ReconcileReport['watermarks']> {
    const row = await table.get(RECONCILE_PARTITION, STATE_ROW);
    const state = row ? parseState(row.props) : undefined;
    return { events: state?.events.watermark ?? null, sessions: state?.sessions.watermark ?? null };
  }

  /** The run's summary row: counts, and the owners it repaired (as many as fit in one property). */
  async function writeSummary(report: ReconcileReport, actor: string): Promise<void> {
    const counts: Record<string, number> = {};
    for (const [pass, c] of Object.entries(report.syncs)) {
      for (const [name, value] of Object.entries(c)) counts[`${pass}${capitalise(name)}`] = value;
    }
    for (const [name, value] of Object.entries(report.credits)) counts[`credits${capitalise(name)}`] = value;
    await table.upsert(RECONCILE_PARTITION, runRowKey(new Date(report.startedAt), report.runId), {
      runId: report.runId,
      actor,
      scope: report.scope.kind === 'all' ? 'all' : `owner:${report.scope.ownerId}`,
      outcome: report.outcome,
      startedAt: report.startedAt,
      finishedAt: report.finishedAt,
      ...counts,
      changedOwners: boundedList(report.changes.map((c) => c.ownerId)),
      grantedSessions: boundedList(report.grants.map((g) => g.sessionId)),
      failures: report.failures.length,
      ...(report.failures[0]
        ? { firstFailure: `${report.failures[0].code}: ${report.failures[0].message}`.slice(0, 1000) }
        : {}),
    });
  }
}

const capitalise = (name: string) => name.charAt(0).toUpperCase() + name.slice(1);

/** Ids joined by commas, cut to fit well inside one string property (32K characters). */
function boundedList(ids: readonly string[]): string {
  const joined = ids.join(',');
  return joined.length <= 30_000 ? joined : `${joined.slice(0, joined.lastIndexOf(',', 30_000))},…`;
}
