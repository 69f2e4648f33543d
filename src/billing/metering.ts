import { z } from 'zod';
import { contractMovedSince } from './access/contract-terms.js';
import type { ConsumeTerms } from './access/decide.js';
import { overridesLapsedSince } from './access/overrides.js';
import { METER_NAMES, METERS, type MeterName } from './catalog.js';
import type { Clock } from './clock.js';
import { ENFORCEMENT_MODES, type EnforcementMode } from './enforcement.js';
import { BillingError, conflict, type FieldIssue, validationError } from './errors.js';
import { idSchema, type OwnerId } from './ids.js';
import { LruMap } from './lru.js';
import { createOwnerLanes, type OwnerLanes } from './metering-lanes.js';
import {
  balanceAction,
  type ConsumeMarker,
  consumeMarkerKey,
  consumeMarkerSchema,
  externalKeySchema,
  ledgerRowKey,
  monitorRowKey,
  parseRow,
  rolloverPartitionFor,
  rolloverRowKey,
  withOptional,
} from './metering-rows.js';
import { BALANCE_ROW, LONGEST_PERIOD_MS, VERSION_ROW } from './owner/keys.js';
import { meterStatus, type OwnerSnapshot, rowsAfter, versionAction, withVersion } from './owner/snapshot.js';
import { requireVersion, type Versioned, versionOf } from './owner/versioned.js';
import { PERIOD_KEY_PATTERN } from './periods.js';
import { answer, commit, RETRY, write } from './storage/commit.js';
import {
  ConcurrencyExhaustedError,
  type EntityProps,
  type EntityTable,
  type TransactionAction,
  type TransactionFailedError,
} from './store.js';
import { EMPTY_COUNTER, parseUsageCounter, type UsageCounter, usageRowKey } from './usage.js';

/**
 * Usage metering: exact, idempotent consumption of a meter's period allowance and then of the owner's
 * credit balance, as the execution runtime asks on every workflow run.
 *
 * Exactly once: a consumption's marker row (`consume|<idempotencyKey>`) is created in the same
 * entity-group transaction as the counter and balance changes, in the owner's partition, with ETag
 * conditions on the counter and balance rows. A duplicate key fails the whole transaction, and the
 * stored answer is returned instead (`replayed: true`).
 *
 * One read per batch: the owner's snapshot (`owner/snapshot.ts`) holds the subscription, the period's
 * counter and the balance, and the terms of each consumption (allowance, window, enforcement) are
 * decided from it by the one decision path (`access/decide.ts` `consumeTerms`).
 *
 * Fast for hot owners: inside one process, consumptions for one owner queue in that owner's lane and
 * are committed together (group commit: one transaction with the counter, the balance and up to
 * `maxBatch` markers). ETag conflicts then come only from other processes, and are retried a bounded
 * number of times.
 *
 * Denials are remembered too: a key gets one answer, forever. A run that was denied and should be tried
 * again after the owner bought credits needs a new key (e.g. `<runId>:<attempt>`).
 */
export interface Metering {
  /** @throws BillingError `validation` (bad request), `conflict` `idempotency_key_reused`; MeteringContentionError */
  consume(request: ConsumeRequest): Promise<ConsumeOutcome>;
  /** Gives back a consumption whose run failed, once. @throws MeteringContentionError */
  refund(request: RefundRequest): Promise<RefundOutcome>;
  /** What is used and what is left, without consuming: for entitlement checks and the summary. */
  status(request: StatusRequest): Promise<MeterStatus>;
}

export interface ConsumeRequest {
  readonly ownerId: OwnerId;
  readonly meter: MeterName;
  /** Units to consume: a positive integer. */
  readonly quantity: number;
  /** The caller's key for this consumption (a workflow run id). Scoped to the owner, across meters. */
  readonly idempotencyKey: string;
  /**
   * The allowance, window and enforcement in force: decided from the owner's snapshot, read once per
   * batch (`consumeTerms`), or fixed (tests). `mode` — `enforce`: deny what allowance and credits cannot
   * cover, consuming nothing; `monitor` (also for soft limits in a grace period): consume anyway and
   * record the would-be denial; `off`: consume and count without checking, drawing no credits.
   */
  readonly terms: ConsumeTerms | ((snapshot: OwnerSnapshot) => ConsumeTerms);
  /**
   * Decide from at least this version of the owner's snapshot: a kept snapshot older than it is not
   * used (a fresh read instead of a transaction bound to fail). @throws `version_not_reached` when even
   * the fresh read is older (checked before the key is looked up; a replay this process remembers is
   * answered without reading, whatever this says).
   */
  readonly minVersion?: number | undefined;
}

interface AnswerBase {
  readonly ownerId: OwnerId;
  readonly meter: MeterName;
  readonly idempotencyKey: string;
  readonly quantity: number;
  readonly mode: EnforcementMode;
  /** True when this key was answered before: this is that answer, and nothing was counted now. */
  readonly replayed: boolean;
  /** Consumed in the period, after this answer (everything: from the allowance, credits and beyond). */
  readonly used: number;
  readonly allowance: number | null;
  /** Left of the period allowance; `null` when unlimited. */
  readonly allowanceRemaining: number | null;
  /** What `enforce` would still allow: allowance left plus credits; `null` when unlimited. */
  readonly remaining: number | null;
  readonly fromAllowance: number;
  readonly fromCredits: number;
  /** Consumed beyond allowance and credits (only under `monitor` or `off`). */
  readonly overage: number;
  readonly creditBalance: number;
  readonly periodKey: string;
  readonly periodStart: string;
  /** Exclusive. */
  readonly periodEnd: string;
  /** When the answer was first given. */
  readonly at: string;
  /**
   * The snapshot version the answer leaves the owner at: the one its own transaction committed (every
   * consumption, even a denial, bumps it), so a check asked with this `minVersion` sees this consumption.
   * A replay answers the first answer's (or, for a marker from before answers were versioned, the
   * version the node read when it found it).
   */
  readonly version: number;
  /** ISO time the snapshot the answer was decided from was read (or validated, for a kept one). */
  readonly asOf: string;
}

export type ConsumeOutcome =
  | (AnswerBase & {
      readonly kind: 'consumed';
      /** Under `monitor`: `enforce` would have denied this (recorded as a `monitor|` row). */
      readonly wouldDeny: boolean;
      /** How many units `enforce` would have been short of; 0 unless `wouldDeny`. */
      readonly shortfall: number;
    })
  | (AnswerBase & {
      readonly kind: 'denied';
      /** `payment_required` when paying the overdue invoice would have allowed it. */
      readonly reason: 'limit_exceeded' | 'payment_required';
      /** How many units allowance and credits together were short of. */
      readonly shortfall: number;
    });

export interface RefundRequest {
  readonly ownerId: OwnerId;
  readonly idempotencyKey: string;
}

export type RefundOutcome =
  | {
      readonly kind: 'refunded';
      readonly ownerId: OwnerId;
      readonly idempotencyKey: string;
      readonly meter: MeterName;
      /** The period the consumption was counted in, which is where it is given back. */
      readonly periodKey: string;
      readonly quantity: number;
      readonly toAllowance: number;
      readonly toCredits: number;
      readonly overageReversed: number;
      /** The period's counter after the refund. */
      readonly used: number;
      readonly creditBalance: number;
      readonly refundedAt: string;
    }
  | {
      readonly kind: 'already_refunded';
      readonly ownerId: OwnerId;
      readonly idempotencyKey: string;
      readonly refundedAt: string;
    }
  /** The key's answer was a denial: nothing was consumed, so there is nothing to give back. */
  | { readonly kind: 'not_consumed'; readonly ownerId: OwnerId; readonly idempotencyKey: string }
  | { readonly kind: 'not_found'; readonly ownerId: OwnerId; readonly idempotencyKey: string };

export interface StatusRequest {
  readonly ownerId: OwnerId;
  readonly meter: MeterName;
  readonly terms: ConsumeRequest['terms'];
}

export interface MeterStatus {
  readonly ownerId: OwnerId;
  readonly meter: MeterName;
  readonly periodKey: string;
  readonly periodStart: string;
  readonly periodEnd: string;
  readonly used: number;
  readonly allowance: number | null;
  readonly allowanceUsed: number;
  readonly allowanceRemaining: number | null;
  readonly creditsUsed: number;
  readonly overage: number;
  readonly creditBalance: number;
  /** What `enforce` would allow now: allowance left plus credits (if the meter draws them); `null` unlimited. */
  readonly remaining: number | null;
}

/** Gave up after too many lost races with other processes; nothing was consumed. Retry with the same key. */
export class MeteringContentionError extends ConcurrencyExhaustedError {}

export interface MeteringOptions {
  /** Most consumptions committed in one transaction (each adds 1-3 rows; the limit is 100). @default 90 */
  readonly maxBatch?: number;
  /** Rounds of ETag conflicts with other processes before giving up. @default 10 */
  readonly maxAttempts?: number;
  /** Answers remembered in this process, so an in-process replay costs no round trip. @default 10000 */
  readonly memoSize?: number;
  /** Owners whose snapshot this process keeps between batches (see `known`). @default 10000 */
  readonly snapshotsKept?: number;
}

export interface MeteringDeps {
  /** The owner-partitioned `billing` table. */
  readonly table: EntityTable;
  /** Reads owner snapshots (with a current lock set; `owner/owner-access.ts`). */
  readonly owners: { read(ownerId: OwnerId): Promise<OwnerSnapshot> };
  readonly clock: Clock;
  /** Share one instance with `createCredits`, so grants queue behind consumptions. @default a new one */
  readonly lanes?: OwnerLanes;
  readonly options?: MeteringOptions;
}

/**
 * Entity-group transactions take at most 100 actions; one is the snapshot's version and one is kept for
 * the entitlement feed's outbox row (`feed/outbox.ts`), which the billing table adds to a change that
 * moves what the owner is entitled to.
 */
const MAX_ACTIONS = 98;

const periodSchema = z
  .object({
    key: z.string().regex(PERIOD_KEY_PATTERN, 'must be YYYY-MM or YYYYMMDDTHHMMSS'),
    start: z.date(),
    end: z.date(),
  })
  .refine((p) => p.start.getTime() < p.end.getTime(), { message: 'start must be before end', path: ['end'] });

const termsSchema = z.object({
  allowance: z.number().int().nonnegative().nullable(),
  period: periodSchema,
  mode: z.enum(ENFORCEMENT_MODES),
});

const consumeSchema = z.object({
  ownerId: idSchema,
  meter: z.enum(METER_NAMES),
  quantity: z.number().int().min(1).max(1_000_000),
  idempotencyKey: externalKeySchema,
  minVersion: z.number().int().nonnegative().optional(),
});
type ValidConsume = z.infer<typeof consumeSchema> & { readonly terms: ConsumeRequest['terms'] };

const refundSchema = z.object({ ownerId: idSchema, idempotencyKey: externalKeySchema });

/** Validates a request made in code (the HTTP layer has already parsed the wire format). */
function parseRequest<T>(schema: z.ZodType<T>, input: unknown, code: string, what: string): T {
  const parsed = schema.safeParse(input);
  if (parsed.success) return parsed.data;
  const details: FieldIssue[] = parsed.error.issues.map((issue) => ({
    path: issue.path.map(String).join('.'),
    message: issue.message,
  }));
  throw validationError(
    code,
    `Invalid ${what}: ${details.map((d) => `${d.path} ${d.message}`).join('; ')}`,
    details,
  );
}

interface Job {
  readonly request: ValidConsume;
  resolve(outcome: ConsumeOutcome): void;
  reject(error: unknown): void;
}

/** A job with the terms its batch decided for it. */
interface Ready {
  readonly job: Job;
  readonly terms: ConsumeTerms;
  readonly counterKey: string;
}

/** A counter as one batch sees it: the stored row, then the batch's changes. */
interface CounterState {
  readonly rowKey: string;
  readonly etag: string | undefined;
  readonly createdAt: string | undefined;
  /** The window's bounds as decided now; they replace what the row says (see `moved`). */
  readonly periodStart: string;
  readonly periodEnd: string;
  /** The stored row names another end: its rollover index row for the new end day is still to write. */
  readonly moved: boolean;
  readonly meter: MeterName;
  readonly periodKey: string;
  counter: UsageCounter;
  allowance: number | null;
  changed: boolean;
}

interface BalanceState {
  readonly etag: string | undefined;
  balance: number;
  changed: boolean;
}

interface Planned {
  readonly job: Job;
  readonly outcome: ConsumeOutcome;
}

interface Plan {
  readonly included: readonly Planned[];
  readonly leftover: readonly Ready[];
  readonly actions: readonly TransactionAction[];
  /** Counters this transaction creates or moves to another end: their rollover index rows must exist first. */
  readonly toIndex: readonly CounterState[];
  /** The counters and balance as the transaction leaves them (to keep the snapshot current). */
  readonly after: {
    readonly counters: ReadonlyArray<{ readonly rowKey: string; readonly counter: UsageCounter }>;
    readonly balance: number | undefined;
  };
}

export function createMetering(deps: MeteringDeps): Metering {
  const { table, clock, owners } = deps;
  const lanes = deps.lanes ?? createOwnerLanes();
  const maxBatch = Math.max(1, Math.min(deps.options?.maxBatch ?? 90, MAX_ACTIONS - 2));
  const maxAttempts = deps.options?.maxAttempts ?? 10;
  const memoSize = deps.options?.memoSize ?? 10_000;

  /** Consumptions waiting for their owner's next group commit. */
  const pending = new Map<OwnerId, Job[]>();
  /** Owners with a flush queued in their lane that has not started yet. */
  const scheduled = new Set<OwnerId>();
  /** First answers by `<owner>|<key>`, oldest evicted first. Markers are never deleted, so these stay true. */
  const memo = new Map<string, ConsumeOutcome>();
  /** Rollover index rows this process has written (they are idempotent; this only saves round trips). */
  const indexed = new Set<string>();
  /**
   * Each owner's snapshot as this process's last transaction left it (from the ETags it returned). A
   * batch decides from it without reading: its transaction is conditional on the snapshot's version,
   * which every change by anyone bumps, so if anything changed it fails and the batch reads afresh.
   */
  const known = new LruMap<OwnerId, OwnerSnapshot>(deps.options?.snapshotsKept ?? 10_000);

  /** The snapshot after this process's own transaction, or `undefined` when an ETag is missing. */
  const afterCommit = (snapshot: OwnerSnapshot, plan: Plan, etags: ReadonlyMap<string, string>) => {
    const version = etags.get(VERSION_ROW);
    if (version === undefined) return undefined;
    const counters = new Map(snapshot.counters);
    for (const { rowKey, counter } of plan.after.counters) {
      const etag = etags.get(rowKey);
      if (etag === undefined) return undefined;
      counters.set(rowKey, { counter, etag });
    }
    let balance = snapshot.balance;
    if (plan.after.balance !== undefined) {
      const etag = etags.get(BALANCE_ROW);
      if (etag === undefined) return undefined;
      balance = { credits: plan.after.balance, etag };
    }
    return {
      ...snapshot,
      counters,
      balance,
      version: { ...snapshot.version, value: snapshot.version.value + 1, etag: version },
      // The raw rows follow too: the next batch's entitlement-feed "before" is this snapshot.
      rows: rowsAfter(snapshot, plan.actions, etags),
    };
  };

  const remember = (outcome: ConsumeOutcome) => {
    memo.set(`${outcome.ownerId}|${outcome.idempotencyKey}`, outcome);
    if (memo.size > memoSize) {
      const oldest = memo.keys().next();
      if (!oldest.done) memo.delete(oldest.value);
    }
  };

  /** The first answer again, provided the request is the same one. */
  const replayOf = (first: ConsumeOutcome, request: ValidConsume): ConsumeOutcome => {
    if (first.meter !== request.meter || first.quantity !== request.quantity) {
      throw conflict(
        'idempotency_key_reused',
        `Idempotency key ${request.idempotencyKey} was already used for ${first.quantity} ${first.meter}; ` +
          'a different consumption needs a different key.',
      );
    }
    return { ...first, replayed: true };
  };

  /** Answers a job with the first answer to its key, as a replay (checked to be the same request). */
  const settleReplay = (job: Job, first: ConsumeOutcome) => {
    try {
      job.resolve(replayOf(first, job.request));
    } catch (error) {
      job.reject(error);
    }
  };

  /** The terms of a job in this batch's snapshot, checked like a request (they may come from a caller). */
  const termsOf = (source: ConsumeRequest['terms'], snapshot: OwnerSnapshot, code: string): ConsumeTerms => {
    const terms = typeof source === 'function' ? source(snapshot) : source;
    if (typeof source === 'function' && !termsSchema.safeParse(terms).success) {
      // Decided by our own code from the snapshot: a bug here, not a bad request.
      throw new Error(`Consume terms decided for ${snapshot.ownerId} are invalid: ${JSON.stringify(terms)}`);
    }
    parseRequest(termsSchema, terms, code, 'consume terms');
    // Counters of periods that can no longer be current are not in the snapshot: nothing consumes there.
    if (terms.period.start.getTime() < snapshot.readAt.getTime() - LONGEST_PERIOD_MS) {
      throw validationError(
        'period_out_of_range',
        `Period ${terms.period.key} started before any period that can still be current; consume in the current period.`,
      );
    }
    return terms;
  };

  function schedule(ownerId: OwnerId) {
    if (scheduled.has(ownerId)) return;
    scheduled.add(ownerId);
    void lanes.run(ownerId, () => flush(ownerId));
  }

  async function flush(ownerId: OwnerId): Promise<void> {
    scheduled.delete(ownerId);
    const jobs = (pending.get(ownerId) ?? []).splice(0, maxBatch);
    let leftover: readonly Job[] = [];
    try {
      if (jobs.length > 0) leftover = await commitBatch(ownerId, jobs);
    } catch (error) {
      // Settled jobs ignore this; the rest learn that nothing of theirs was committed.
      for (const job of jobs) job.reject(error);
    }
    const queue = pending.get(ownerId) ?? [];
    queue.unshift(...leftover);
    if (queue.length === 0) pending.delete(ownerId);
    else schedule(ownerId);
  }

  /** Commits what fits of `jobs` in one transaction; returns the jobs left for the next one. */
  async function commitBatch(ownerId: OwnerId, jobs: readonly Job[]): Promise<readonly Job[]> {
    // One leader per key; later copies in the batch get the leader's answer as a replay.
    const followers = new Map<string, Job[]>();
    let active: Job[] = [];
    for (const job of jobs) {
      const key = job.request.idempotencyKey;
      const same = followers.get(key);
      if (same) same.push(job);
      else {
        followers.set(key, []);
        active.push(job);
      }
    }
    const copiesOf = (leader: Job) => followers.get(leader.request.idempotencyKey) ?? [];
    /** The leader gets the answer (as a replay if it was stored before); its copies get it as a replay. */
    const settleAll = (leader: Job, outcome: ConsumeOutcome, stored: boolean) => {
      if (stored) settleReplay(leader, outcome);
      else leader.resolve(outcome);
      for (const copy of copiesOf(leader)) settleReplay(copy, outcome);
    };
    const failAll = (leader: Job, error: unknown) => {
      leader.reject(error);
      for (const copy of copiesOf(leader)) copy.reject(error);
    };
    const drop = (done: ReadonlySet<Job>) => {
      active = active.filter((job) => !done.has(job));
    };

    let leftover: readonly Ready[] = [];
    await commit(
      table,
      ownerId,
      async (round) => {
        if (active.length === 0) return answer(undefined);
        // The snapshot this process left, if any (after a conflict: a fresh read).
        // A kept snapshot older than a job's `minVersion` is known to be stale: read instead of failing a
        // transaction on it. Without `minVersion` nothing changes (the version condition still guards it).
        const atLeast = Math.max(0, ...active.map((job) => job.request.minVersion ?? 0));
        const remembered = round === 1 ? known.get(ownerId) : undefined;
        // Limits that moved with time alone, with no write to bump the version (overrides that lapsed, an
        // enterprise contract that began, ended or fell past due), change the lock set's basis: read afresh,
        // which repairs the lock set (`owner/owner-access.ts`).
        const kept =
          remembered &&
          remembered.version.value >= atLeast &&
          !overridesLapsedSince(remembered.overrides?.value, remembered.readAt, clock.now()) &&
          !contractMovedSince(remembered, clock.now())
            ? remembered
            : undefined;
        const snapshot = kept ? { ...kept, readAt: clock.now() } : await owners.read(ownerId);
        const seen = versionOf(snapshot);
        const ready: Ready[] = [];
        const settled = new Set<Job>();
        for (const job of active) {
          try {
            requireVersion(snapshot, job.request.minVersion);
            const terms = termsOf(job.request.terms, snapshot, 'invalid_consume_terms');
            ready.push({ job, terms, counterKey: usageRowKey(job.request.meter, terms.period) });
          } catch (error) {
            failAll(job, error);
            settled.add(job);
          }
        }
        // A subject that may not consume (a locked workflow) is refused, unless the key was answered
        // before: then that answer stands, whatever changed since.
        const refused = ready.filter((r) => r.terms.refusal !== undefined);
        const firstAnswers = await Promise.all(
          refused.map(({ job }) => table.get(ownerId, consumeMarkerKey(job.request.idempotencyKey))),
        );
        refused.forEach(({ job }, i) => {
          const row = firstAnswers[i];
          if (row)
            settleAll(
              job,
              answerOf(ownerId, job.request.idempotencyKey, parseRow(consumeMarkerSchema, row), false, seen),
              true,
            );
          else
            failAll(
              job,
              new BillingError(
                'payment_required',
                'resource_locked',
                "The workflow is over the plan's workflow limits and locked; upgrade, delete workflows, or choose which to keep.",
              ),
            );
          settled.add(job);
        });
        drop(settled);
        const planned = ready.filter((r) => !settled.has(r.job));
        if (planned.length === 0) return answer(undefined);
        const plan = decide(ownerId, snapshot, planned, clock.now());
        await ensureIndexed(ownerId, plan.toIndex);
        return write(
          plan.actions,
          ({ etags }) => {
            for (const { job, outcome } of plan.included) {
              remember(outcome);
              settleAll(job, outcome, false);
            }
            leftover = plan.leftover;
            active = [];
            const next = afterCommit(snapshot, plan, etags);
            if (next) known.set(ownerId, next);
            else known.delete(ownerId);
          },
          async (error): Promise<typeof RETRY> => {
            known.delete(ownerId);
            const replays = await findReplays(ownerId, plan.included, error, seen);
            for (const { job, outcome } of replays) {
              remember(outcome);
              settleAll(job, outcome, true);
            }
            drop(new Set(replays.map((r) => r.job)));
            return RETRY;
          },
        );
      },
      {
        what: `consuming for ${ownerId}`,
        maxAttempts,
        exhausted: (message, tableName, cause) => new MeteringContentionError(message, tableName, { cause }),
      },
    );
    return leftover.flatMap(({ job }) => [job, ...copiesOf(job)]);
  }

  /** Pure: what this batch answers and writes, given the snapshot. Re-run after every conflict. */
  function decide(ownerId: OwnerId, snapshot: OwnerSnapshot, jobs: readonly Ready[], now: Date): Plan {
    const at = now.toISOString();
    const balance: BalanceState = {
      etag: snapshot.balance.etag,
      balance: snapshot.balance.credits,
      changed: false,
    };
    const counters = new Map<string, CounterState>();
    const counterFor = ({ job, terms, counterKey }: Ready): CounterState => {
      const existing = counters.get(counterKey);
      if (existing) return existing;
      const stored = snapshot.counters.get(counterKey);
      const parsed = stored?.counter;
      const created: CounterState = {
        rowKey: counterKey,
        etag: stored?.etag,
        createdAt: parsed?.createdAt ?? undefined,
        // The window decided now is authoritative over the bounds the row was written with: the same key
        // can end elsewhere once Stripe's renewal replaces the window assumed while it was late, or on a
        // yearly plan's counter written before its allowance became monthly.
        periodStart: terms.period.start.toISOString(),
        periodEnd: terms.period.end.toISOString(),
        moved:
          parsed !== undefined &&
          parsed.periodEnd !== null &&
          Date.parse(parsed.periodEnd) !== terms.period.end.getTime(),
        meter: job.request.meter,
        periodKey: terms.period.key,
        counter: parsed ?? EMPTY_COUNTER,
        allowance: terms.allowance,
        changed: false,
      };
      counters.set(counterKey, created);
      return created;
    };

    const included: Planned[] = [];
    const markers: TransactionAction[] = [];
    const extras: TransactionAction[] = [];
    let fixedRows = 0; // counters and balance that this batch writes
    let leftoverFrom = jobs.length;

    for (const [index, item] of jobs.entries()) {
      const { job, terms } = item;
      const { request } = job;
      const c = counterFor(item);
      const allowanceLeft =
        terms.allowance === null
          ? Number.POSITIVE_INFINITY
          : Math.max(0, terms.allowance - c.counter.allowanceUsed);
      // A balance below zero (a clawback of spent credits) covers nothing, and is never drawn further down.
      const credits =
        METERS[request.meter].drawsCredits && terms.mode !== 'off' ? Math.max(0, balance.balance) : 0;
      const fromAllowance = Math.min(request.quantity, allowanceLeft);
      const beyond = request.quantity - fromAllowance;
      const fromCredits = Math.min(beyond, credits);
      const shortfall = terms.mode === 'off' ? 0 : beyond - fromCredits;
      const denied = terms.mode === 'enforce' && shortfall > 0;
      const wouldDeny = terms.mode === 'monitor' && shortfall > 0;

      const rows =
        1 +
        (!denied && fromCredits > 0 ? 1 : 0) +
        (wouldDeny ? 1 : 0) +
        (!denied && !c.changed ? 1 : 0) +
        (!denied && fromCredits > 0 && !balance.changed ? 1 : 0);
      if (included.length >= maxBatch || markers.length + extras.length + fixedRows + rows > MAX_ACTIONS) {
        leftoverFrom = index;
        break;
      }

      const usedBefore = c.counter.used;
      const reason = denied
        ? (terms.denial?.(c.counter.allowanceUsed, request.quantity, credits) ?? 'limit_exceeded')
        : undefined;
      if (!denied) {
        if (!c.changed) fixedRows++;
        c.changed = true;
        c.allowance = terms.allowance;
        c.counter = {
          ...c.counter,
          used: c.counter.used + request.quantity,
          allowanceUsed: c.counter.allowanceUsed + fromAllowance,
          creditsUsed: c.counter.creditsUsed + fromCredits,
          overage: c.counter.overage + (beyond - fromCredits),
        };
        if (fromCredits > 0) {
          if (!balance.changed) fixedRows++;
          balance.changed = true;
          balance.balance -= fromCredits;
          extras.push({
            kind: 'create',
            rowKey: ledgerRowKey(now, included.length, 'draw', request.idempotencyKey),
            props: {
              kind: 'draw',
              credits: -fromCredits,
              balanceAfter: balance.balance,
              ref: request.idempotencyKey,
              description: `${fromCredits} ${METERS[request.meter].unit}(s) beyond the allowance of period ${terms.period.key}`,
              at,
              meter: request.meter,
              periodKey: terms.period.key,
            },
          });
        }
      }
      if (wouldDeny) {
        extras.push({
          kind: 'create',
          rowKey: monitorRowKey(at, request.idempotencyKey),
          props: {
            feature: request.meter,
            reason: 'limit_exceeded',
            why: 'monitor',
            limit: terms.allowance ?? -1,
            used: usedBefore,
            quantity: request.quantity,
            subject: JSON.stringify({ ownerId }),
            at,
            idempotencyKey: request.idempotencyKey,
            fromCredits,
            shortfall,
          },
        });
      }

      const allowanceRemaining =
        terms.allowance === null ? null : Math.max(0, terms.allowance - c.counter.allowanceUsed);
      const creditsLeft = METERS[request.meter].drawsCredits ? Math.max(0, balance.balance) : 0;
      const marker: ConsumeMarker = {
        outcome: denied ? 'denied' : 'consumed',
        ...(reason === undefined ? {} : { reason }),
        meter: request.meter,
        quantity: request.quantity,
        mode: terms.mode,
        periodKey: terms.period.key,
        periodStart: c.periodStart,
        periodEnd: c.periodEnd,
        used: c.counter.used,
        ...(terms.allowance === null ? {} : { allowance: terms.allowance }),
        ...(allowanceRemaining === null
          ? {}
          : { allowanceRemaining, remaining: allowanceRemaining + creditsLeft }),
        fromAllowance: denied ? 0 : fromAllowance,
        fromCredits: denied ? 0 : fromCredits,
        overage: denied ? 0 : beyond - fromCredits,
        shortfall,
        creditBalance: balance.balance,
        wouldDeny,
        at,
        version: snapshot.version.value + 1,
        asOf: snapshot.readAt.toISOString(),
      };
      markers.push({ kind: 'create', rowKey: consumeMarkerKey(request.idempotencyKey), props: marker });
      included.push({
        job,
        outcome: answerOf(ownerId, request.idempotencyKey, marker, false, versionOf(snapshot)),
      });
    }

    const fixed: TransactionAction[] = [];
    const toIndex: CounterState[] = [];
    for (const c of counters.values()) {
      if (!c.changed) continue;
      const props: EntityProps = {
        used: c.counter.used,
        allowanceUsed: c.counter.allowanceUsed,
        creditsUsed: c.counter.creditsUsed,
        overage: c.counter.overage,
        ...withOptional('allowance', c.allowance),
        meter: c.meter,
        periodKey: c.periodKey,
        periodStart: c.periodStart,
        periodEnd: c.periodEnd,
        createdAt: c.createdAt ?? at,
        updatedAt: at,
      };
      if (c.etag === undefined || c.moved) toIndex.push(c);
      if (c.etag === undefined) fixed.push({ kind: 'create', rowKey: c.rowKey, props });
      else fixed.push({ kind: 'update', rowKey: c.rowKey, props, etag: c.etag });
    }
    if (balance.changed) fixed.push(balanceAction(balance.etag, balance.balance, at));

    return {
      included,
      leftover: jobs.slice(leftoverFrom),
      // Markers first: a failing create at index i < included.length is a replay of included[i]. The
      // version always: even a batch of denials was decided from the snapshot, which may be one kept
      // from an earlier batch, and must not commit if anything changed since.
      actions: [...markers, ...fixed, ...extras, versionAction(snapshot)],
      toIndex,
      after: {
        counters: [...counters.values()]
          .filter((c) => c.changed)
          .map((c) => ({
            rowKey: c.rowKey,
            counter: {
              ...c.counter,
              allowance: c.allowance,
              periodStart: c.periodStart,
              periodEnd: c.periodEnd,
              createdAt: c.createdAt ?? at,
            },
          })),
        balance: balance.changed ? balance.balance : undefined,
      },
    };
  }

  /**
   * Writes the rollover index rows of counters about to be created (or to get another end), before the
   * transaction writes them: a counter's end day always has its index row.
   */
  async function ensureIndexed(ownerId: OwnerId, counters: readonly CounterState[]) {
    await Promise.all(
      counters.map(async (c) => {
        const partition = rolloverPartitionFor(new Date(c.periodEnd));
        const rowKey = rolloverRowKey(ownerId, c.meter, c.periodKey);
        const id = `${partition}/${rowKey}`;
        if (indexed.has(id)) return;
        await table.upsert(partition, rowKey, {
          ownerId,
          meter: c.meter,
          periodKey: c.periodKey,
          periodStart: c.periodStart,
          periodEnd: c.periodEnd,
        });
        indexed.add(id);
        if (indexed.size > memoSize) indexed.clear();
      }),
    );
  }

  /**
   * After a failed transaction: the consumptions whose marker already exists, with their first answers.
   * When a marker exists, every marker of the batch is read, so one round settles all the replays.
   */
  async function findReplays(
    ownerId: OwnerId,
    included: readonly Planned[],
    error: TransactionFailedError,
    seen: Versioned,
  ) {
    if (error.reason !== 'exists') return [];
    const index = error.actionIndex;
    if (index !== undefined && index >= included.length) return [];
    const rows = await Promise.all(
      included.map(({ job }) => table.get(ownerId, consumeMarkerKey(job.request.idempotencyKey))),
    );
    const replays: Array<{ job: Job; outcome: ConsumeOutcome }> = [];
    included.forEach(({ job }, i) => {
      const row = rows[i];
      if (!row) return;
      const marker = parseRow(consumeMarkerSchema, row, 'consume marker');
      replays.push({ job, outcome: answerOf(ownerId, job.request.idempotencyKey, marker, false, seen) });
    });
    return replays;
  }

  async function consume(input: ConsumeRequest): Promise<ConsumeOutcome> {
    const parsed = parseRequest(consumeSchema, input, 'invalid_consume_request', 'consume request');
    if (typeof input.terms !== 'function')
      parseRequest(termsSchema, input.terms, 'invalid_consume_request', 'consume request');
    const request: ValidConsume = { ...parsed, terms: input.terms };
    const remembered = memo.get(`${request.ownerId}|${request.idempotencyKey}`);
    if (remembered) return replayOf(remembered, request);
    return new Promise<ConsumeOutcome>((resolve, reject) => {
      const job: Job = { request, resolve, reject };
      const queue = pending.get(request.ownerId);
      if (queue) queue.push(job);
      else pending.set(request.ownerId, [job]);
      schedule(request.ownerId);
    });
  }

  async function refund(input: RefundRequest): Promise<RefundOutcome> {
    const { ownerId, idempotencyKey } = parseRequest(
      refundSchema,
      input,
      'invalid_refund_request',
      'refund request',
    );
    return lanes.run(ownerId, () =>
      commit<RefundOutcome>(
        table,
        ownerId,
        async () => {
          const markerRow = await table.get(ownerId, consumeMarkerKey(idempotencyKey));
          if (!markerRow) return answer({ kind: 'not_found', ownerId, idempotencyKey });
          const marker = parseRow(consumeMarkerSchema, markerRow, 'consume marker');
          if (marker.outcome === 'denied') return answer({ kind: 'not_consumed', ownerId, idempotencyKey });
          if (marker.refundedAt !== undefined) {
            return answer({
              kind: 'already_refunded',
              ownerId,
              idempotencyKey,
              refundedAt: marker.refundedAt,
            });
          }
          const counterKey = usageRowKey(marker.meter, {
            key: marker.periodKey,
            start: new Date(marker.periodStart),
          });
          // The counter by itself (its period may be older than the snapshot's range); the balance and the
          // version from the snapshot.
          const [counterRow, snapshot] = await Promise.all([
            table.get(ownerId, counterKey),
            owners.read(ownerId),
          ]);
          if (!counterRow) {
            throw new Error(
              `Corrupt metering state: ${ownerId}/${counterKey} is missing but consumption ${idempotencyKey} counted in it`,
            );
          }
          const counter = parseUsageCounter(counterRow);
          const refundedAt = clock.now().toISOString();
          const used = Math.max(0, counter.used - marker.quantity);
          const actions: TransactionAction[] = [
            {
              kind: 'update',
              rowKey: markerRow.rowKey,
              props: { ...markerRow.props, refundedAt },
              etag: markerRow.etag,
            },
            {
              kind: 'update',
              rowKey: counterKey,
              props: {
                ...counterRow.props,
                used,
                allowanceUsed: Math.max(0, counter.allowanceUsed - marker.fromAllowance),
                creditsUsed: Math.max(0, counter.creditsUsed - marker.fromCredits),
                overage: Math.max(0, counter.overage - marker.overage),
                updatedAt: refundedAt,
              },
              etag: counterRow.etag,
            },
          ];
          let creditBalance = snapshot.balance.credits;
          if (marker.fromCredits > 0) {
            creditBalance += marker.fromCredits;
            actions.push(balanceAction(snapshot.balance.etag, creditBalance, refundedAt), {
              kind: 'create',
              rowKey: ledgerRowKey(new Date(refundedAt), 0, 'refund', idempotencyKey),
              props: {
                kind: 'refund',
                credits: marker.fromCredits,
                balanceAfter: creditBalance,
                ref: idempotencyKey,
                description: `Refund of a failed run's ${marker.fromCredits} credit(s), period ${marker.periodKey}`,
                at: refundedAt,
                meter: marker.meter,
                periodKey: marker.periodKey,
              },
            });
          }
          return write(withVersion(snapshot, actions), () => {
            known.delete(ownerId);
            return {
              kind: 'refunded',
              ownerId,
              idempotencyKey,
              meter: marker.meter,
              periodKey: marker.periodKey,
              quantity: marker.quantity,
              toAllowance: marker.fromAllowance,
              toCredits: marker.fromCredits,
              overageReversed: marker.overage,
              used,
              creditBalance,
              refundedAt,
            };
          });
        },
        {
          what: `refunding ${idempotencyKey} for ${ownerId}`,
          maxAttempts,
          exhausted: (message, tableName, cause) =>
            new MeteringContentionError(message, tableName, { cause }),
        },
      ),
    );
  }

  async function status(input: StatusRequest): Promise<MeterStatus> {
    const { ownerId, meter } = parseRequest(
      consumeSchema.pick({ ownerId: true, meter: true }),
      input,
      'invalid_status_request',
      'usage status request',
    );
    const snapshot = await owners.read(ownerId);
    const terms = termsOf(input.terms, snapshot, 'invalid_status_request');
    const status = meterStatus(snapshot, meter, terms.period, terms.allowance);
    return {
      ownerId,
      meter,
      periodKey: status.periodKey,
      periodStart: status.periodStart,
      periodEnd: status.periodEnd,
      used: status.counter.used,
      allowance: status.allowance,
      allowanceUsed: status.counter.allowanceUsed,
      allowanceRemaining: status.allowanceRemaining,
      creditsUsed: status.counter.creditsUsed,
      overage: status.counter.overage,
      creditBalance: snapshot.balance.credits,
      remaining: status.remaining,
    };
  }

  return { consume, refund, status };
}

/** The answer a marker stores, as an outcome. */
function answerOf(
  ownerId: OwnerId,
  idempotencyKey: string,
  marker: ConsumeMarker,
  replayed: boolean,
  /** What the node read, for a marker written before answers were versioned. */
  seen: Versioned,
): ConsumeOutcome {
  const base: AnswerBase = {
    ownerId,
    meter: marker.meter,
    idempotencyKey,
    quantity: marker.quantity,
    mode: marker.mode,
    replayed,
    used: marker.used,
    allowance: marker.allowance ?? null,
    allowanceRemaining: marker.allowanceRemaining ?? null,
    remaining: marker.remaining ?? null,
    fromAllowance: marker.fromAllowance,
    fromCredits: marker.fromCredits,
    overage: marker.overage,
    creditBalance: marker.creditBalance,
    periodKey: marker.periodKey,
    periodStart: marker.periodStart,
    periodEnd: marker.periodEnd,
    at: marker.at,
    version: marker.version ?? seen.version,
    asOf: marker.asOf ?? seen.asOf,
  };
  return marker.outcome === 'denied'
    ? { ...base, kind: 'denied', reason: marker.reason ?? 'limit_exceeded', shortfall: marker.shortfall }
    : { ...base, kind: 'consumed', wouldDeny: marker.wouldDeny, shortfall: marker.shortfall };
}
