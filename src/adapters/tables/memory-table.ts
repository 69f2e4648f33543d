import {
  type ConflictReason,
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  type EntityValue,
  EtagMismatchError,
  entitySize,
  FORBIDDEN_KEY_CHARACTERS,
  type ListPageOptions,
  pageRefusal,
  type RowKeyRange,
  rangeOf,
  type ScanOptions,
  type StoredEntity,
  type StoreLimit,
  StoreRejectedError,
  TABLE_LIMITS,
  type TransactionAction,
  TransactionFailedError,
} from '../../billing/store.js';

/**
 * An in-memory `EntityTable` with the same semantics as Table Storage (etags, conditional writes,
 * all-or-nothing transactions) that refuses what Table Storage refuses (`TABLE_LIMITS`), with the same
 * error classes as the Azure adapter. It exists to make unit tests fast; it is held to the same contract
 * suite as the Azure adapter (`tests/integration/entity-table.contract.test.ts`). Never used at run time.
 */
export interface MemoryTableOptions {
  /**
   * Rows one `listPage` answers at most, whatever `top` asks: Table Storage ends pages early (after five
   * seconds of work, at partition boundaries), so tests can make callers cope with short pages.
   * @default 1000
   */
  readonly pageRows?: number;
}

export function createMemoryTable(name = 'memory', options: MemoryTableOptions = {}): EntityTable {
  const pageRows = Math.max(1, Math.min(TABLE_LIMITS.pageRows, options.pageRows ?? TABLE_LIMITS.pageRows));
  const partitions = new Map<string, Map<string, StoredEntity>>();
  let version = 0;
  const nextEtag = () => `W/"${++version}"`;

  const rowsOf = (pk: string): ReadonlyMap<string, StoredEntity> | undefined => partitions.get(pk);
  const put = (pk: string, rk: string, props: EntityProps): StoredEntity => {
    // Frozen copies: neither the caller's later changes to `props` nor changes to what a caller read can
    // reach the stored state, as with a real service.
    const stored: StoredEntity = Object.freeze({
      partitionKey: pk,
      rowKey: rk,
      etag: nextEtag(),
      props: Object.freeze({ ...props }),
    });
    let rows = partitions.get(pk);
    if (!rows) {
      rows = new Map();
      partitions.set(pk, rows);
    }
    rows.set(rk, stored);
    return stored;
  };
  const remove = (pk: string, rk: string) => {
    const rows = partitions.get(pk);
    rows?.delete(rk);
    if (rows?.size === 0) partitions.delete(pk);
  };

  const rejected = (what: string, refusal: Refusal, actionIndex?: number) =>
    new StoreRejectedError(
      `${what} refused by table ${name}: ${refusal.detail}`,
      name,
      refusal.limit,
      actionIndex,
    );
  /** Refuses a single-row write the way the Azure adapter and the service would. */
  const checkWrite = (what: string, pk: string, rk: string, props?: EntityProps) => {
    const refusal = (props && unrepresentable(props)) ?? refusalOf(pk, rk, props);
    if (refusal) throw rejected(what, refusal);
  };

  // Async like the real thing, so callers cannot accidentally depend on synchronous completion.
  const tick = () => Promise.resolve();

  return {
    name,
    async get(pk, rk) {
      await tick();
      return rowsOf(pk)?.get(rk);
    },
    async create(pk, rk, props) {
      await tick();
      checkWrite(`create ${pk}/${rk}`, pk, rk, props);
      if (rowsOf(pk)?.has(rk)) throw new EntityExistsError(`create ${pk}/${rk}: EntityAlreadyExists`, name);
      return put(pk, rk, props);
    },
    async upsert(pk, rk, props) {
      await tick();
      checkWrite(`upsert ${pk}/${rk}`, pk, rk, props);
      put(pk, rk, props);
    },
    async update(pk, rk, props, etag) {
      await tick();
      // The service validates the request before it looks at the row, so a malformed update of a missing
      // row is refused rather than "not found".
      checkWrite(`update ${pk}/${rk}`, pk, rk, props);
      const current = rowsOf(pk)?.get(rk);
      if (!current) throw new EntityNotFoundError(`update ${pk}/${rk}: ResourceNotFound`, name);
      if (current.etag !== etag)
        throw new EtagMismatchError(`update ${pk}/${rk}: UpdateConditionNotSatisfied`, name);
      return put(pk, rk, props);
    },
    async delete(pk, rk, etag) {
      await tick();
      checkWrite(`delete ${pk}/${rk}`, pk, rk);
      const current = rowsOf(pk)?.get(rk);
      if (!current) return false;
      if (etag !== undefined && current.etag !== etag) {
        throw new EtagMismatchError(`delete ${pk}/${rk}: UpdateConditionNotSatisfied`, name);
      }
      remove(pk, rk);
      return true;
    },
    async list(pk, options = {}) {
      await tick();
      const range = rangeOf(options);
      return sortedRows(rowsOf(pk))
        .filter((row) => range === undefined || inRange(row.rowKey, range))
        .map((row) => project(row, options.select));
    },
    async listPage(pk, options: ListPageOptions) {
      await tick();
      const refused = pageRefusal(options);
      if (refused !== undefined)
        throw rejected(`listPage ${pk}`, { limit: 'invalid_input', detail: refused });
      const range = rangeOf(options);
      // The cursor names the next row to read, as the service's continuation token does.
      const from = options.cursor === undefined ? undefined : cursorKey(options.cursor, pk);
      if (from === null)
        throw rejected(`listPage ${pk}`, {
          limit: 'invalid_input',
          detail: 'not a cursor listPage returned',
        });
      const matching = sortedRows(rowsOf(pk)).filter(
        (row) =>
          (range === undefined || inRange(row.rowKey, range)) &&
          (options.after === undefined || row.rowKey > options.after) &&
          (from === undefined || row.rowKey >= from),
      );
      const page = matching.slice(0, Math.min(options.top, pageRows));
      const next = matching[page.length];
      return {
        rows: page.map((row) => project(row, options.select)),
        nextCursor: next === undefined ? undefined : encodeCursor(pk, next.rowKey),
      };
    },
    async transact(pk, actions: readonly TransactionAction[]) {
      await tick();
      const what = `transaction on ${pk}`;
      // First what the Azure adapter refuses before sending anything (see `unrepresentable`).
      actions.forEach((action, index) => {
        const refusal = action.kind === 'delete' ? undefined : unrepresentable(action.props);
        if (refusal) throw rejected(what, refusal, index);
      });
      // Then what the service refuses for the request as a whole. A single action is performed as a
      // single-entity operation by the Azure adapter, so only its entity limits apply to it.
      if (actions.length > TABLE_LIMITS.transactionActions) {
        throw rejected(what, {
          limit: 'transaction_too_large',
          detail: `${actions.length} actions (at most ${TABLE_LIMITS.transactionActions})`,
        });
      }
      if (actions.length > 1) {
        const bytes = actions.reduce(
          (sum, action) => sum + entitySize(pk, action.rowKey, action.kind === 'delete' ? {} : action.props),
          0,
        );
        if (bytes > TABLE_LIMITS.transactionBytes) {
          throw rejected(what, {
            limit: 'transaction_too_large',
            detail: `${bytes} bytes (at most ${TABLE_LIMITS.transactionBytes})`,
          });
        }
      }
      // Then each action in order, as the service processes them: the first one that is malformed or whose
      // condition fails fails the whole transaction, before anything is applied (all or nothing).
      const rows = rowsOf(pk);
      const seen = new Set<string>();
      actions.forEach((action, index) => {
        if (seen.has(action.rowKey)) {
          throw rejected(
            what,
            {
              limit: 'duplicate_row_in_transaction',
              detail: `row ${action.rowKey} appears more than once`,
            },
            index,
          );
        }
        seen.add(action.rowKey);
        const refusal = refusalOf(pk, action.rowKey, action.kind === 'delete' ? undefined : action.props);
        if (refusal) throw rejected(what, refusal, index);
        const current = rows?.get(action.rowKey);
        const conflict = conflictOf(action, current);
        if (conflict) {
          throw new TransactionFailedError(
            `${what} failed at action ${index} (${action.kind} ${action.rowKey}): ${conflict}`,
            name,
            index,
            conflict,
          );
        }
      });
      const etags = new Map<string, string>();
      for (const action of actions) {
        if (action.kind === 'delete') remove(pk, action.rowKey);
        else etags.set(action.rowKey, put(pk, action.rowKey, action.props).etag);
      }
      return { etags };
    },
    scan(options: ScanOptions): AsyncIterable<StoredEntity> {
      return scanRows(options);
    },
    async ping() {
      await tick();
    },
  };

  async function* scanRows(options: ScanOptions): AsyncGenerator<StoredEntity> {
    await tick();
    const prefix = options.partitionPrefix ?? '';
    // A snapshot taken when the scan starts: writes during the scan neither break nor join it.
    const after = options.partitionsAfter;
    const keys = [...partitions.keys()]
      .filter((pk) => pk.startsWith(prefix) && (after === undefined || pk > after))
      .sort(compare);
    const matches = options.rowKeys === undefined ? [] : [...options.rowKeys];
    const snapshot = keys.flatMap((pk) =>
      sortedRows(partitions.get(pk)).filter(
        (row) => options.rowKeys === undefined || matches.some((match) => rowKeyMatches(row.rowKey, match)),
      ),
    );
    for (const row of snapshot) yield project(row, options.select);
  }
}

const encodeCursor = (pk: string, rk: string) => Buffer.from(JSON.stringify([pk, rk])).toString('base64url');

/** The next row key a cursor names; `null` for a cursor this table did not return for this partition. */
function cursorKey(cursor: string, pk: string): string | null {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
    if (!Array.isArray(parsed) || parsed[0] !== pk || typeof parsed[1] !== 'string') return null;
    return encodeCursor(pk, parsed[1]) === cursor ? parsed[1] : null;
  } catch {
    // Not JSON: not a cursor this table made.
    return null;
  }
}

/** Why a request is refused: which limit, and a detail for the message. */
interface Refusal {
  readonly limit: StoreLimit;
  readonly detail: string;
}

/**
 * What Table Storage refuses in one row write: invalid keys, an over-long string, too many properties, an
 * entity over the size limit. `props` is absent for a delete, whose keys alone are checked.
 */
function refusalOf(pk: string, rk: string, props: EntityProps | undefined): Refusal | undefined {
  for (const [which, key] of [
    ['partition key', pk],
    ['row key', rk],
  ] as const) {
    if (key.length > TABLE_LIMITS.keyLength) {
      return {
        limit: 'key_invalid',
        detail: `${which} of ${key.length} characters (at most ${TABLE_LIMITS.keyLength})`,
      };
    }
    if (FORBIDDEN_KEY_CHARACTERS.test(key)) {
      return { limit: 'key_invalid', detail: `${which} ${JSON.stringify(key)} has a forbidden character` };
    }
  }
  if (props === undefined) return undefined;
  const size = entitySize(pk, rk, props);
  if (size > TABLE_LIMITS.entityBytes) {
    return {
      limit: 'entity_too_large',
      detail: `entity of ${size} bytes (at most ${TABLE_LIMITS.entityBytes})`,
    };
  }
  for (const [property, value] of Object.entries(props)) {
    if (typeof value === 'string' && value.length > TABLE_LIMITS.stringLength) {
      return {
        limit: 'property_too_large',
        detail: `${property} has ${value.length} characters (at most ${TABLE_LIMITS.stringLength})`,
      };
    }
  }
  const count = Object.keys(props).length;
  if (count > TABLE_LIMITS.properties) {
    return {
      limit: 'too_many_properties',
      detail: `${count} properties (at most ${TABLE_LIMITS.properties})`,
    };
  }
  return undefined;
}

/**
 * Mirrors the Azure adapter's own refusal of what the SDK cannot carry faithfully: a non-finite number
 * (serialised as JSON `null`, so the property would silently vanish) and property names the SDK or the
 * service treat as keys or metadata. Kept in step with `unrepresentable` in `azure-table.ts`.
 */
function unrepresentable(props: EntityProps): Refusal | undefined {
  for (const [property, value] of Object.entries(props)) {
    if (RESERVED_PROPERTY_NAME.test(property)) {
      return { limit: 'invalid_input', detail: `property name ${property} is reserved for keys or metadata` };
    }
    if (typeof value === 'number' && !Number.isFinite(value)) {
      return { limit: 'invalid_input', detail: `${property} is ${value}; only finite numbers can be stored` };
    }
  }
  return undefined;
}

const RESERVED_PROPERTY_NAME =
  /^(?:partitionKey|rowKey|etag|timestamp|PartitionKey|RowKey|Timestamp)$|^odata\.|@odata\./;

function conflictOf(
  action: TransactionAction,
  current: StoredEntity | undefined,
): ConflictReason | undefined {
  switch (action.kind) {
    case 'create':
      return current ? 'exists' : undefined;
    case 'update':
      return !current ? 'not_found' : current.etag !== action.etag ? 'etag_mismatch' : undefined;
    case 'delete':
      return current ? undefined : 'not_found';
    case 'upsert':
      return undefined;
  }
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function sortedRows(rows: ReadonlyMap<string, StoredEntity> | undefined): StoredEntity[] {
  return rows ? [...rows.values()].sort((a, b) => compare(a.rowKey, b.rowKey)) : [];
}

function inRange(key: string, range: RowKeyRange): boolean {
  return key >= range.from && key < range.to;
}

function rowKeyMatches(key: string, match: string | RowKeyRange): boolean {
  return typeof match === 'string' ? key === match : inRange(key, match);
}

/** The row with only the selected properties (keys and etag always), as a `$select` query returns it. */
function project(row: StoredEntity, select: readonly string[] | undefined): StoredEntity {
  if (select === undefined) return row;
  const props: Record<string, EntityValue> = {};
  for (const property of select) {
    // Own properties only: `select: ['toString']` must not pick up what every object inherits.
    const value = Object.hasOwn(row.props, property) ? row.props[property] : undefined;
    if (value !== undefined) props[property] = value;
  }
  return Object.freeze({ ...row, props: Object.freeze(props) });
}
