import { z } from 'zod';
import {
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  EtagMismatchError,
} from './store.js';

/**
 * The reconciler's bookkeeping in the `billing` table: one state row (where each pass stopped, the
 * watermarks, which run holds it) and one summary row per run. Its partition holds `|`, which owner ids
 * never do (`ids.ts`), so it can never be an owner's partition.
 */
export const RECONCILE_PARTITION = 'reconcile|state';
export const STATE_ROW = 'state';
export const RUN_PREFIX = 'run|';

/** Where a pass over one of Stripe's time-ordered lists (events, paid sessions) stands. */
export interface FeedProgress {
  /** Everything created before this, less the overlap, was read by a finished pass. */
  readonly watermark: string | null;
  /** The pass in progress: the `since` it lists from (fixed for the whole pass)... */
  readonly since: string | null;
  /** ...the page cursor where it stopped (null: at its first page)... */
  readonly cursor: string | null;
  /** ...and when it began: the watermark once it reaches the end. */
  readonly passStart: string | null;
}

export interface ReconcileState {
  readonly events: FeedProgress;
  readonly sessions: FeedProgress;
  readonly owners: {
    /** The last owner (partition key) the sweep of live owners finished; null at the start of a sweep. */
    readonly after: string | null;
    /** Sweeps of every live owner completed so far. */
    readonly sweeps: number;
  };
  /** The run that holds the state, or last held it. */
  readonly run: {
    readonly id: string;
    readonly startedAt: string;
    /** Until then no other run may start; renewed at every checkpoint, cleared when the run ends. */
    readonly leaseUntil: string | null;
    readonly finishedAt: string | null;
  } | null;
}

const NO_FEED: FeedProgress = { watermark: null, since: null, cursor: null, passStart: null };
export const INITIAL_STATE: ReconcileState = {
  events: NO_FEED,
  sessions: NO_FEED,
  owners: { after: null, sweeps: 0 },
  run: null,
};

const iso = z.iso.datetime({ offset: true });
const rowSchema = z.object({
  eventsWatermark: iso.optional(),
  eventsSince: iso.optional(),
  eventsCursor: z.string().optional(),
  eventsPassStart: iso.optional(),
  sessionsWatermark: iso.optional(),
  sessionsSince: iso.optional(),
  sessionsCursor: z.string().optional(),
  sessionsPassStart: iso.optional(),
  ownersAfter: z.string().optional(),
  ownerSweeps: z.number().int().nonnegative().optional(),
  runId: z.string().optional(),
  runStartedAt: iso.optional(),
  runLeaseUntil: iso.optional(),
  runFinishedAt: iso.optional(),
});

export function parseState(props: EntityProps): ReconcileState {
  const parsed = rowSchema.safeParse(props);
  if (!parsed.success) {
    throw new Error(
      `Corrupt reconciler state ${RECONCILE_PARTITION}/${STATE_ROW}: ${z.prettifyError(parsed.error)}`,
    );
  }
  const r = parsed.data;
  return {
    events: {
      watermark: r.eventsWatermark ?? null,
      since: r.eventsSince ?? null,
      cursor: r.eventsCursor ?? null,
      passStart: r.eventsPassStart ?? null,
    },
    sessions: {
      watermark: r.sessionsWatermark ?? null,
      since: r.sessionsSince ?? null,
      cursor: r.sessionsCursor ?? null,
      passStart: r.sessionsPassStart ?? null,
    },
    owners: { after: r.ownersAfter ?? null, sweeps: r.ownerSweeps ?? 0 },
    run:
      r.runId === undefined || r.runStartedAt === undefined
        ? null
        : {
            id: r.runId,
            startedAt: r.runStartedAt,
            leaseUntil: r.runLeaseUntil ?? null,
            finishedAt: r.runFinishedAt ?? null,
          },
  };
}

/** The row's properties; an absent value is left out (a table row cannot hold null). */
export function stateProps(state: ReconcileState): EntityProps {
  const props: Record<string, string | number> = { ownerSweeps: state.owners.sweeps };
  const put = (name: string, value: string | null) => {
    if (value !== null) props[name] = value;
  };
  for (const feed of ['events', 'sessions'] as const) {
    put(`${feed}Watermark`, state[feed].watermark);
    put(`${feed}Since`, state[feed].since);
    put(`${feed}Cursor`, state[feed].cursor);
    put(`${feed}PassStart`, state[feed].passStart);
  }
  put('ownersAfter', state.owners.after);
  if (state.run) {
    put('runId', state.run.id);
    put('runStartedAt', state.run.startedAt);
    put('runLeaseUntil', state.run.leaseUntil);
    put('runFinishedAt', state.run.finishedAt);
  }
  return props;
}

/** Another run took the state over (this one's lease ran out): this run must stop writing it. */
export class RunSupersededError extends Error {
  readonly code = 'reconcile_superseded';
  constructor(runId: string, options: { readonly cause?: unknown } = {}) {
    super(
      `Reconciler run ${runId} lost its state row to another run (its lease expired); it stops here`,
      options,
    );
    this.name = 'RunSupersededError';
  }
}

export type Claim =
  | {
      readonly kind: 'claimed';
      readonly state: ReconcileState;
      /**
       * Writes the state if this run still holds it, renewing the lease.
       * @throws RunSupersededError when another run wrote it since
       */
      save(next: ReconcileState): Promise<void>;
    }
  | { readonly kind: 'busy'; readonly holder: ReconcileState['run'] };

/**
 * Takes the state row for `runId` with an ETag-conditioned write: of two runs starting together one wins
 * and the other is told `busy`, and a run whose lease is still running keeps the row. A run that died
 * leaves its lease to expire, after which the next run takes over from its last checkpoint.
 */
export async function claimState(
  table: EntityTable,
  runId: string,
  now: Date,
  leaseMs: number,
): Promise<Claim> {
  const row = await table.get(RECONCILE_PARTITION, STATE_ROW);
  const current = row ? parseState(row.props) : INITIAL_STATE;
  const holder = current.run;
  if (holder?.leaseUntil && Date.parse(holder.leaseUntil) > now.getTime()) {
    return { kind: 'busy', holder };
  }
  const claimed: ReconcileState = {
    ...current,
    run: {
      id: runId,
      startedAt: now.toISOString(),
      leaseUntil: new Date(now.getTime() + leaseMs).toISOString(),
      finishedAt: null,
    },
  };
  let etag: string;
  try {
    etag = row
      ? (await table.update(RECONCILE_PARTITION, STATE_ROW, stateProps(claimed), row.etag)).etag
      : (await table.create(RECONCILE_PARTITION, STATE_ROW, stateProps(claimed))).etag;
  } catch (error) {
    // Someone wrote the row since we read it: another run claimed it first.
    if (isLostRace(error)) return { kind: 'busy', holder: await holderNow(table) };
    throw error;
  }
  return {
    kind: 'claimed',
    state: claimed,
    async save(next) {
      try {
        etag = (await table.update(RECONCILE_PARTITION, STATE_ROW, stateProps(next), etag)).etag;
      } catch (error) {
        if (isLostRace(error)) throw new RunSupersededError(runId, { cause: error });
        throw error;
      }
    },
  };
}

function isLostRace(error: unknown): boolean {
  return (
    error instanceof EtagMismatchError ||
    error instanceof EntityExistsError ||
    error instanceof EntityNotFoundError
  );
}

async function holderNow(table: EntityTable): Promise<ReconcileState['run']> {
  const row = await table.get(RECONCILE_PARTITION, STATE_ROW);
  return row ? parseState(row.props).run : null;
}

/**
 * A run's summary row: newest first in the partition (`run|<inverted ms>|<runId>`), so the latest runs
 * are one short range read.
 */
export function runRowKey(at: Date, runId: string): string {
  const inverted = (9_999_999_999_999 - at.getTime()).toString().padStart(13, '0');
  return `${RUN_PREFIX}${inverted}|${runId}`;
}
