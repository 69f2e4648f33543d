import { SNAPSHOT_PREFIX, VERSION_ROW } from '../owner/keys.js';
import {
  ConcurrencyExhaustedError,
  type EntityTable,
  type TransactionAction,
  TransactionFailedError,
  type TransactionResult,
} from '../store.js';

/**
 * The one write path for multi-row changes to one partition.
 *
 * Every change is decided from a fresh read and written as one entity-group transaction whose
 * conditions say what the decision was based on: a `create` of a marker row (an idempotency key, an
 * event id, an item that must exist once), `update` with the ETag read, `delete` of a row that must
 * still exist. When a condition fails, someone else wrote first: the attempt is decided again on fresh
 * state after a jittered, growing pause, a bounded number of times. Nothing else in the domain writes
 * with a retry loop of its own.
 */

/** What one attempt wants: an answer without writing, or rows to write and the answer once written. */
export type Attempt<T> =
  | { readonly kind: 'answer'; readonly value: T }
  | {
      readonly kind: 'write';
      readonly actions: readonly TransactionAction[];
      /** The answer once the actions are committed, given the rows' new ETags. */
      readonly committed: (result: TransactionResult) => T;
      /**
       * A condition failed. Return the final answer (a marker that exists means "done before", say), or
       * `RETRY` to decide again on fresh state. Without it, every conflict is retried.
       */
      readonly conflict?: (error: TransactionFailedError) => Promise<T | typeof RETRY> | T | typeof RETRY;
    };

/** Returned by `conflict` to decide again on fresh state. */
export const RETRY: unique symbol = Symbol('retry');

export const answer = <T>(value: T): Attempt<T> => ({ kind: 'answer', value });

export function write<T>(
  actions: readonly TransactionAction[],
  committed: (result: TransactionResult) => T,
  conflict?: (error: TransactionFailedError) => Promise<T | typeof RETRY> | T | typeof RETRY,
): Attempt<T> {
  return conflict === undefined
    ? { kind: 'write', actions, committed }
    : { kind: 'write', actions, committed, conflict };
}

export interface CommitOptions {
  /** What is being written, for the error a caller sees after too many conflicts ("consume for alice"). */
  readonly what: string;
  /** Attempts before giving up. @default 10 */
  readonly maxAttempts?: number;
  /** First pause's upper bound; each further pause doubles it, up to `maxDelayMs`. @default 4 */
  readonly baseDelayMs?: number;
  /** @default 250 */
  readonly maxDelayMs?: number;
  /** The error to throw after too many conflicts (a caller's own subclass); `ConcurrencyExhaustedError` by default. */
  readonly exhausted?: (message: string, table: string, cause: ConcurrencyExhaustedError) => Error;
}

/**
 * Decides (with `attempt`, which reads what it needs each time) and writes to one partition until a
 * transaction lands or an attempt answers without writing.
 * @throws ConcurrencyExhaustedError after `maxAttempts` conflicts; nothing of the last attempt was written
 * @throws whatever `attempt` or the table throw otherwise (an outage, a refused request) at once
 */
export function commit<T>(
  table: EntityTable,
  partitionKey: string,
  attempt: (round: number) => Promise<Attempt<T>>,
  options: CommitOptions,
): Promise<T> {
  return untilSettled(table.name, options, async (round) => {
    const plan = await attempt(round);
    if (plan.kind === 'answer') return plan.value;
    if (plan.actions.length === 0) return plan.committed({ etags: new Map() });
    assertVersioned(plan.actions);
    try {
      return plan.committed(await table.transact(partitionKey, plan.actions));
    } catch (error) {
      if (!(error instanceof TransactionFailedError)) throw error;
      return plan.conflict ? plan.conflict(error) : RETRY;
    }
  });
}

/**
 * The retry loop under `commit`, for protocols that span partitions (the directory's index and owner
 * rows): `step` runs again, after a jittered pause, each time it returns `RETRY` because something it
 * read changed under it.
 * @throws ConcurrencyExhaustedError after `maxAttempts` rounds
 */
export async function untilSettled<T>(
  tableName: string,
  options: CommitOptions,
  step: (round: number) => Promise<T | typeof RETRY>,
): Promise<T> {
  const maxAttempts = options.maxAttempts ?? 10;
  const base = options.baseDelayMs ?? 4;
  const cap = options.maxDelayMs ?? 250;
  for (let round = 1; round <= maxAttempts; round++) {
    const settled = await step(round);
    if (settled !== RETRY) return settled;
    if (round < maxAttempts) await pause(round, base, cap);
  }
  const message = `Gave up ${options.what} after ${maxAttempts} conflicting writes by others; nothing more was written. Retry.`;
  const error = new ConcurrencyExhaustedError(message, tableName);
  throw options.exhausted ? options.exhausted(message, tableName, error) : error;
}

/**
 * A change to an owner's snapshot must bump its version in the same transaction: readers that keep a
 * snapshot (metering) rely on the version to know it is still current.
 */
function assertVersioned(actions: readonly TransactionAction[]): void {
  const touches = actions.some((a) => a.rowKey.startsWith(SNAPSHOT_PREFIX) && a.rowKey !== VERSION_ROW);
  if (touches && !actions.some((a) => a.rowKey === VERSION_ROW))
    throw new Error(
      `A change to the owner snapshot (${actions.map((a) => a.rowKey).join(', ')}) without its version; add versionAction(snapshot)`,
    );
}

/** "Full jitter": a random pause up to an exponentially growing bound, so racing writers spread out. */
function pause(round: number, base: number, cap: number): Promise<void> {
  const bound = Math.min(cap, base * 2 ** (round - 1));
  return new Promise((resolve) => setTimeout(resolve, Math.random() * bound));
}
