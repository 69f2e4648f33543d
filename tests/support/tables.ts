import { observeTable, type TableMethod } from '../../src/adapters/tables/observed-table.js';
import type { EntityTable } from '../../src/billing/store.js';
import { StoreError } from '../../src/billing/store.js';

export interface CallLog {
  /** Every call, in order: table, method, partition, and the rows a read returned (once it returned). */
  readonly calls: Array<{
    readonly table: string;
    readonly method: TableMethod;
    readonly partition: string;
    rows: number;
  }>;
  reset(): void;
  count(filter?: { readonly table?: string; readonly method?: TableMethod }): number;
  /** Rows the matching calls read from storage (`get`, `list`, `listPage`, `scan`). */
  rowsRead(filter?: { readonly table?: string; readonly method?: TableMethod }): number;
}

/** Rows in a read's result: a row, a list of rows, or a page of them. */
function rowsIn(result: unknown): number {
  if (Array.isArray(result)) return result.length;
  if (typeof result !== 'object' || result === null) return 0;
  if ('rows' in result && Array.isArray(result.rows)) return result.rows.length;
  return 'rowKey' in result ? 1 : 0;
}

/** Wraps tables so every storage call is recorded (round trips, as the issue counts them). */
export function countingTables<T extends Record<string, EntityTable>>(
  tables: T,
): { tables: T; log: CallLog } {
  const calls: CallLog['calls'] = [];
  const matching = (filter: { readonly table?: string; readonly method?: TableMethod }) =>
    calls.filter(
      (c) =>
        (filter.table === undefined || c.table === filter.table) &&
        (filter.method === undefined || c.method === filter.method),
    );
  const log: CallLog = {
    calls,
    reset: () => {
      calls.length = 0;
    },
    count: (filter = {}) => matching(filter).length,
    rowsRead: (filter = {}) =>
      matching(filter)
        .filter(
          (c) => c.method === 'get' || c.method === 'list' || c.method === 'listPage' || c.method === 'scan',
        )
        .reduce((sum, c) => sum + c.rows, 0),
  };
  const wrapped = Object.fromEntries(
    Object.entries(tables).map(([key, table]) => [
      key,
      observeTable(table, async (method, partition, run) => {
        const call = { table: key, method, partition, rows: 0 };
        calls.push(call);
        const result = await run();
        call.rows = rowsIn(result);
        return result;
      }),
    ]),
  ) as T;
  return { tables: wrapped, log };
}

/** How an injected failure behaves: the call never reaches storage, or it does and its answer is lost. */
export type FailureMode = 'before' | 'after';

/** The injected failure: what a timeout or a crash looks like to the caller. */
export class InjectedFailure extends StoreError {
  constructor(call: number, mode: FailureMode) {
    super(
      `injected failure of storage call ${call} (${mode === 'before' ? 'not applied' : 'applied, answer lost'})`,
      'injected',
    );
  }
}

export interface Faults {
  /** Fail the `n`-th storage call from now (1-based) in this mode; 0 turns failures off. */
  failCall(n: number, mode: FailureMode): void;
  /** Storage calls made since the last `failCall`. */
  readonly calls: number;
}

/**
 * Wraps tables (sharing one call counter) so that one chosen call fails: before it reaches storage, or
 * after it took effect with its answer lost. Scans fail on their first page.
 */
export function faultyTables<T extends Record<string, EntityTable>>(
  tables: T,
): { tables: T; faults: Faults } {
  let calls = 0;
  let failAt = 0;
  let mode: FailureMode = 'before';
  const faults: Faults = {
    failCall(n, m) {
      calls = 0;
      failAt = n;
      mode = m;
    },
    get calls() {
      return calls;
    },
  };
  const wrapped = Object.fromEntries(
    Object.entries(tables).map(([key, table]) => [
      key,
      observeTable(table, async (_method, _partition, run) => {
        const call = ++calls;
        if (call !== failAt) return run();
        if (mode === 'before') throw new InjectedFailure(call, mode);
        await run();
        throw new InjectedFailure(call, mode);
      }),
    ]),
  ) as T;
  return { tables: wrapped, faults };
}
