/**
 * The storage port: a partitioned entity table with optimistic concurrency, modelled on Azure Table
 * Storage because that is where the data lives. The domain depends on this interface only; the Azure
 * adapter (`src/adapters/tables/azure-table.ts`) and the in-memory twin used by fast unit tests
 * (`src/adapters/tables/memory-table.ts`) are held to one shared contract suite, and the twin refuses
 * whatever Table Storage refuses (see `TABLE_LIMITS`).
 *
 * Every multi-row change of the domain goes through `commit()` (`src/billing/storage/commit.ts`), the one
 * write path with markers, ETag conditions and bounded retry.
 */

export type EntityValue = string | number | boolean;
export type EntityProps = Readonly<Record<string, EntityValue>>;

export interface StoredEntity {
  readonly partitionKey: string;
  readonly rowKey: string;
  /** Opaque version; pass it back to `update`/`delete`/transactions to write only if unchanged. */
  readonly etag: string;
  readonly props: EntityProps;
}

export type TransactionAction =
  /** Fails the whole transaction if the row exists: this is how markers make writes happen once. */
  | { readonly kind: 'create'; readonly rowKey: string; readonly props: EntityProps }
  /** Insert or replace, unconditionally. */
  | { readonly kind: 'upsert'; readonly rowKey: string; readonly props: EntityProps }
  /** Replace only if the row is still at `etag`. */
  | { readonly kind: 'update'; readonly rowKey: string; readonly props: EntityProps; readonly etag: string }
  /** Delete; fails the transaction if the row is absent. (Table Storage takes no etag for this action.) */
  | { readonly kind: 'delete'; readonly rowKey: string };

/** A half-open range of row keys, `[from, to)`. */
export interface RowKeyRange {
  readonly from: string;
  readonly to: string;
}

export interface ListOptions {
  /** Only rows whose key starts with this. */
  readonly prefix?: string;
  /** Only rows in this key range (instead of `prefix`). */
  readonly range?: RowKeyRange;
  /** Only these properties (keys and etag always come back); cheaper for listings. */
  readonly select?: readonly string[];
}

export interface ListPageOptions extends ListOptions {
  /**
   * Only rows whose key sorts after this one (exclusive), within `prefix`/`range`: how a caller resumes
   * after the last row it handed out, when all it kept is that row's key (an HTTP cursor, say).
   */
  readonly after?: string;
  /** At most this many rows, 1 to `TABLE_LIMITS.pageRows` (the service's `$top`); more is refused. */
  readonly top: number;
  /** The `nextCursor` of the previous page of the same query; opaque. */
  readonly cursor?: string;
}

export interface ListPage {
  /** In row-key order. May be fewer than `top`, even none, while `nextCursor` is set: Table Storage ends a
   * page early (five seconds of work, a partition boundary) and says where to go on. */
  readonly rows: StoredEntity[];
  /** Pass back as `cursor` for the next page; `undefined` when the query is done. */
  readonly nextCursor: string | undefined;
}

/** A query across partitions, for maintenance jobs only (migrations, sweeps); never on a request path. */
export interface ScanOptions {
  /** Only partitions whose key starts with this. */
  readonly partitionPrefix?: string;
  /**
   * Only partitions whose key sorts after this one (exclusive): a job that stops part way resumes its
   * scan from the last partition it finished, instead of from the start.
   */
  readonly partitionsAfter?: string;
  /** Only rows whose key is one of these, or in one of these ranges. */
  readonly rowKeys?: ReadonlyArray<string | RowKeyRange>;
  readonly select?: readonly string[];
}

export interface TransactionResult {
  /** The new ETag of every row the transaction created, replaced or updated, by row key. */
  readonly etags: ReadonlyMap<string, string>;
}

export interface EntityTable {
  readonly name: string;
  /** `undefined` when the row does not exist; any other failure throws. */
  get(partitionKey: string, rowKey: string): Promise<StoredEntity | undefined>;
  /** @throws EntityExistsError */
  create(partitionKey: string, rowKey: string, props: EntityProps): Promise<StoredEntity>;
  upsert(partitionKey: string, rowKey: string, props: EntityProps): Promise<void>;
  /** @throws EtagMismatchError when the row changed since `etag`, EntityNotFoundError when it is gone */
  update(partitionKey: string, rowKey: string, props: EntityProps, etag: string): Promise<StoredEntity>;
  /** `false` when there was nothing to delete. @throws EtagMismatchError when `etag` is stale */
  delete(partitionKey: string, rowKey: string, etag?: string): Promise<boolean>;
  /** Rows of one partition in row-key order (every page, one request per 1,000 rows). */
  list(partitionKey: string, options?: ListOptions): Promise<StoredEntity[]>;
  /**
   * One bounded page of rows of one partition, in row-key order: one request, at most `top` rows. For
   * reads whose range can grow without bound (a ledger, markers), where `list` would read it all.
   * @throws StoreRejectedError `invalid_input` for a `top` out of range or a cursor it did not return
   */
  listPage(partitionKey: string, options: ListPageOptions): Promise<ListPage>;
  /**
   * All actions or none, within one partition (an entity-group transaction: at most 100 actions, each
   * row once, at most 4 MiB).
   * @throws TransactionFailedError naming the action that failed, for a conflict (exists, etag, absent)
   * @throws StoreRejectedError when Table Storage refuses the request as malformed (too large, bad key)
   */
  transact(partitionKey: string, actions: readonly TransactionAction[]): Promise<TransactionResult>;
  /** Rows of many partitions; see `ScanOptions`. */
  scan(options: ScanOptions): AsyncIterable<StoredEntity>;
  /** Cheap round trip for health checks; throws when the service cannot be reached. */
  ping(): Promise<void>;
}

/**
 * What Table Storage refuses, in one place: the in-memory twin enforces these, the domain checks its own
 * inputs against them (and answers 400 instead of failing at the service).
 * https://learn.microsoft.com/rest/api/storageservices/understanding-the-table-service-data-model
 */
export const TABLE_LIMITS = {
  /** Characters in a partition or row key (1 KiB of UTF-16). */
  keyLength: 512,
  /** Characters of one string property (64 KiB of UTF-16). */
  stringLength: 32 * 1024,
  /** Bytes of one entity, counted the service's way (`entitySize`). */
  entityBytes: 1024 * 1024,
  /** Custom properties of one entity (the service has 255 including the three system properties). */
  properties: 252,
  /** Actions in one entity-group transaction. */
  transactionActions: 100,
  /** Bytes of one transaction's payload. */
  transactionBytes: 4 * 1024 * 1024,
  /** Rows of one query response (`$top` may not ask for more). */
  pageRows: 1000,
} as const;

/** Characters Table Storage forbids in keys: `/ \ # ?` and control characters. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: these control characters are exactly what the service refuses
export const FORBIDDEN_KEY_CHARACTERS = /[\u0000-\u001f\u007f-\u009f/\\#?]/;

/**
 * The size Table Storage charges an entity: 4 bytes, plus the keys in UTF-16, plus per property
 * 8 bytes, its name in UTF-16 and its value (strings: UTF-16 plus 4; numbers: 8; booleans: 1).
 */
export function entitySize(partitionKey: string, rowKey: string, props: EntityProps): number {
  let size = 4 + 2 * (partitionKey.length + rowKey.length);
  for (const [name, value] of Object.entries(props)) {
    size += 8 + 2 * name.length;
    size += typeof value === 'string' ? 4 + 2 * value.length : typeof value === 'number' ? 8 : 1;
  }
  return size;
}

export type StoreErrorCode =
  /** The service could not be reached or failed (network, 5xx, throttling, auth): retry later. */
  | 'store_unavailable'
  | 'entity_exists'
  | 'entity_not_found'
  | 'etag_mismatch'
  /** A transaction failed on one of its conditions (see `TransactionFailedError.reason`). */
  | 'transaction_conflict'
  /** The service refused the request as malformed (see `StoreRejectedError.limit`): retrying cannot help. */
  | 'store_rejected'
  /** Too many lost races with concurrent writers; nothing was written. Retry. */
  | 'store_contended';

export class StoreError extends Error {
  constructor(
    message: string,
    readonly table: string,
    readonly code: StoreErrorCode = 'store_unavailable',
    options?: { readonly cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class EntityExistsError extends StoreError {
  constructor(message: string, table: string, options?: { readonly cause?: unknown }) {
    super(message, table, 'entity_exists', options);
  }
}
export class EntityNotFoundError extends StoreError {
  constructor(message: string, table: string, options?: { readonly cause?: unknown }) {
    super(message, table, 'entity_not_found', options);
  }
}
export class EtagMismatchError extends StoreError {
  constructor(message: string, table: string, options?: { readonly cause?: unknown }) {
    super(message, table, 'etag_mismatch', options);
  }
}

export type ConflictReason = 'exists' | 'etag_mismatch' | 'not_found';

export class TransactionFailedError extends StoreError {
  constructor(
    message: string,
    table: string,
    /** Index of the failing action, when the service said. */
    readonly actionIndex: number | undefined,
    readonly reason: ConflictReason,
    options?: { readonly cause?: unknown },
  ) {
    super(message, table, 'transaction_conflict', options);
  }
}

/** Which of Table Storage's limits a refused request broke. */
export type StoreLimit =
  | 'key_invalid'
  | 'property_too_large'
  | 'entity_too_large'
  | 'too_many_properties'
  | 'transaction_too_large'
  | 'duplicate_row_in_transaction'
  | 'invalid_input';

/** Table Storage refused the request itself (HTTP 400/413): the caller sent something that cannot be stored. */
export class StoreRejectedError extends StoreError {
  constructor(
    message: string,
    table: string,
    readonly limit: StoreLimit,
    /** For a transaction: the action that was refused, when known. */
    readonly actionIndex?: number,
    options?: { readonly cause?: unknown },
  ) {
    super(message, table, 'store_rejected', options);
  }
}

/** Gave up after too many lost races with concurrent writers; nothing was written. */
export class ConcurrencyExhaustedError extends StoreError {
  constructor(message: string, table: string, options?: { readonly cause?: unknown }) {
    super(message, table, 'store_contended', options);
  }
}

/** The smallest string greater than every string starting with `prefix`: the exclusive end of a range. */
export function prefixEnd(prefix: string): string {
  if (prefix === '') return '\uffff';
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

/** Why a page request cannot be sent (`top` out of range), or `undefined`. Shared by every adapter. */
export function pageRefusal(options: ListPageOptions): string | undefined {
  const { top } = options;
  if (!Number.isInteger(top) || top < 1 || top > TABLE_LIMITS.pageRows)
    return `top of ${top} (an integer from 1 to ${TABLE_LIMITS.pageRows})`;
  return undefined;
}

/** The row-key range `ListOptions` select, or `undefined` for the whole partition. */
export function rangeOf(options: ListOptions): RowKeyRange | undefined {
  if (options.range) return options.range;
  if (options.prefix !== undefined && options.prefix !== '')
    return { from: options.prefix, to: prefixEnd(options.prefix) };
  return undefined;
}
