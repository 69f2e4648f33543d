/**
 * The storage port: a partitioned entity table with optimistic concurrency, modelled on Azure Table
 * Storage because that is where the data lives. The domain depends on this interface only; the Azure
 * adapter (`src/adapters/tables/azure-table.ts`) and the in-memory one used by fast unit tests
 * (`src/adapters/tables/memory-table.ts`) are held to one shared contract suite.
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
  /** Delete; fails the transaction if the row is absent. (The SDK offers no etag for this action.) */
  | { readonly kind: 'delete'; readonly rowKey: string };

export interface ListOptions {
  /** Only rows whose key starts with this. */
  readonly prefix?: string;
  /** Only these properties (keys and etag always come back); cheaper for counts. */
  readonly select?: readonly string[];
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
  /** Rows of one partition in row-key order. */
  list(partitionKey: string, options?: ListOptions): Promise<StoredEntity[]>;
  /** Number of rows of one partition under a prefix. */
  count(partitionKey: string, prefix: string): Promise<number>;
  /**
   * All actions or none, within one partition (an entity-group transaction, at most 100 actions).
   * @throws TransactionFailedError naming the action that failed
   */
  transact(partitionKey: string, actions: readonly TransactionAction[]): Promise<void>;
  /** Cheap round trip for health checks; throws when the service cannot be reached. */
  ping(): Promise<void>;
}

export class StoreError extends Error {
  constructor(
    message: string,
    readonly table: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class EntityExistsError extends StoreError {}
export class EntityNotFoundError extends StoreError {}
export class EtagMismatchError extends StoreError {}

export class TransactionFailedError extends StoreError {
  constructor(
    message: string,
    table: string,
    /** Index of the failing action, when the service said. */
    readonly actionIndex: number | undefined,
    readonly reason: 'exists' | 'etag_mismatch' | 'not_found' | 'other',
  ) {
    super(message, table);
  }
}

/** The smallest string greater than every string starting with `prefix`: the exclusive end of a range. */
export function prefixEnd(prefix: string): string {
  if (prefix === '') return '\uffff';
  const last = prefix.charCodeAt(prefix.length - 1);
  return prefix.slice(0, -1) + String.fromCharCode(last + 1);
}

export interface MutateOptions {
  /** How many read-modify-write rounds before giving up. @default 8 */
  readonly attempts?: number;
}

/** What a mutation wants done: write these props, delete the row, or leave it as it is. */
export type Mutation = { readonly put: EntityProps } | { readonly delete: true } | undefined;

/**
 * Read-modify-write with ETag (If-Match) and bounded retry: the only way the domain changes an existing
 * row that others may change concurrently. `decide` must be pure; it is re-run on every conflict.
 * @throws ConcurrencyExhaustedError after `attempts` lost races
 */
export async function mutate(
  table: EntityTable,
  partitionKey: string,
  rowKey: string,
  decide: (current: StoredEntity | undefined) => Mutation,
  options: MutateOptions = {},
): Promise<StoredEntity | undefined> {
  const attempts = options.attempts ?? 8;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const current = await table.get(partitionKey, rowKey);
    const change = decide(current);
    try {
      if (change === undefined) return current;
      if ('delete' in change) {
        if (current !== undefined) await table.delete(partitionKey, rowKey, current.etag);
        return undefined;
      }
      return current === undefined
        ? await table.create(partitionKey, rowKey, change.put)
        : await table.update(partitionKey, rowKey, change.put, current.etag);
    } catch (error) {
      const lostRace =
        error instanceof EtagMismatchError ||
        error instanceof EntityExistsError ||
        error instanceof EntityNotFoundError;
      if (!lostRace) throw error;
      // Someone else wrote first: back off a little (jittered) and decide again on fresh state.
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 5 * attempt));
    }
  }
  throw new ConcurrencyExhaustedError(
    `Gave up writing ${table.name}/${partitionKey}/${rowKey} after ${attempts} concurrent-update conflicts`,
    table.name,
  );
}

export class ConcurrencyExhaustedError extends StoreError {}
