import {
  odata,
  RestError,
  type TransactionAction as SdkAction,
  TableClient,
  type TableEntityResult,
  type TableTransactionEntityResponse,
} from '@azure/data-tables';
import type { TokenCredential } from '@azure/identity';
import {
  type ConflictReason,
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  type EntityValue,
  EtagMismatchError,
  FORBIDDEN_KEY_CHARACTERS,
  type ListOptions,
  type ListPageOptions,
  pageRefusal,
  prefixEnd,
  type RowKeyRange,
  rangeOf,
  type ScanOptions,
  type StoredEntity,
  StoreError,
  type StoreLimit,
  StoreRejectedError,
  TABLE_LIMITS,
  type TransactionAction,
  TransactionFailedError,
  type TransactionResult,
} from '../../billing/store.js';

/** How to reach Table Storage: a connection string (Azurite, keys) or an endpoint with an Entra ID credential. */
export type TableConnection =
  | { readonly kind: 'connectionString'; readonly connectionString: string }
  | { readonly kind: 'endpoint'; readonly endpoint: string; readonly credential: TokenCredential };

const SYSTEM_PROPS = new Set(['partitionKey', 'rowKey', 'etag', 'timestamp']);

/**
 * Table Storage allows at most 15 comparisons in one `$filter`; a scan whose row-key list needs more is
 * narrowed by the service to the keys' overall range and matched exactly here.
 */
const MAX_FILTER_COMPARISONS = 15;

/**
 * An `EntityTable` on Azure Table Storage (or Azurite). The table is created on first use, once.
 * A missing row reads as `undefined`; every other failure throws, so an outage never looks like "not found".
 * Failures are classified by HTTP status and the service's error code, never by message text:
 * conflicts become `EntityExistsError`/`EtagMismatchError`/`EntityNotFoundError` (or
 * `TransactionFailedError`), a request the service refuses as malformed (400/413) `StoreRejectedError`,
 * and anything else (network, 5xx, auth, throttling, a missing table) `StoreError('store_unavailable')`.
 *
 * Every SDK call carries an abort signal that fires `timeoutMs` after the call starts. The SDK's retry
 * policy sends the same request object again and waits between tries on that signal, so one deadline
 * bounds the whole call, retries and back-off included: a frozen service costs a caller `timeoutMs`,
 * not `maxRetries` times a socket timeout. A call cut off this way is `store_unavailable` like any other
 * call without an answer. Listings get a fresh deadline per page (see `query`).
 */
export function createAzureTable(
  connection: TableConnection,
  tableName: string,
  options: {
    /** Retries of transient failures inside the SDK (exponential back-off). @default 3 */
    readonly maxRetries?: number;
    /** How long one call may take in all, the SDK's retries included. @default 10000 */
    readonly timeoutMs?: number;
  } = {},
): EntityTable {
  const timeoutMs = options.timeoutMs ?? 10_000;
  /**
   * Runs one SDK call under its own deadline. The cut-off is recognised by our signal having fired, not
   * by the SDK's error (its `AbortError` classes differ between its packages), and reported as such.
   */
  const timed = async <T>(call: (options: { abortSignal: AbortSignal }) => Promise<T>): Promise<T> => {
    const abortSignal = AbortSignal.timeout(timeoutMs);
    try {
      return await call({ abortSignal });
    } catch (error) {
      throw abortSignal.aborted ? new DeadlineExceeded(timeoutMs, { cause: error }) : error;
    }
  };
  const clientOptions = {
    allowInsecureConnection: true,
    retryOptions: { maxRetries: options.maxRetries ?? 3 },
  };
  const client =
    connection.kind === 'connectionString'
      ? TableClient.fromConnectionString(connection.connectionString, tableName, clientOptions)
      : new TableClient(connection.endpoint, tableName, connection.credential, clientOptions);

  let ready: Promise<void> | undefined;
  const ensureTable = (): Promise<void> => {
    ready ??= timed((o) => client.createTable(o)).catch((error: unknown) => {
      ready = undefined; // let the next call try again rather than caching a transient failure
      const message = `Could not create or reach table ${tableName}: ${describe(error)}`;
      throw new StoreError(message, tableName, 'store_unavailable', { cause: error });
    });
    return ready;
  };

  /** Classifies a failure; a table that vanished (deleted behind our back) is created again on next use. */
  const classifyFailure = (error: unknown): Failure => {
    const failure = classify(error);
    if (failure.kind === 'unavailable' && failure.tableMissing) ready = undefined;
    return failure;
  };

  /** The port's error for a failed single-row operation on `partitionKey`/`rowKey`. */
  const rowError = (error: unknown, what: string, partitionKey: string, rowKey: string): StoreError => {
    const failure = classifyFailure(error);
    const message = `${what} ${partitionKey}/${rowKey} on table ${tableName} failed: ${describe(error)}`;
    const options = { cause: error };
    switch (failure.kind) {
      case 'conflict':
        if (failure.reason === 'exists') return new EntityExistsError(message, tableName, options);
        if (failure.reason === 'etag_mismatch') return new EtagMismatchError(message, tableName, options);
        return new EntityNotFoundError(message, tableName, options);
      case 'rejected': {
        const limit = limitOf(failure, { batch: false, keys: [[partitionKey, rowKey]] });
        return new StoreRejectedError(refusedMessage(message, limit), tableName, limit, undefined, options);
      }
      case 'unavailable':
        return new StoreError(message, tableName, 'store_unavailable', options);
    }
  };

  /**
   * The port's error for a failed transaction. `knownIndex` is the failing action when we know it (a
   * single action performed alone); otherwise the service's own report is used.
   */
  const transactionError = (
    error: unknown,
    partitionKey: string,
    actions: readonly TransactionAction[],
    knownIndex?: number,
  ): StoreError => {
    const failure = classifyFailure(error);
    const index = knownIndex ?? failingIndex(error, actions.length);
    const action = index === undefined ? undefined : actions[index];
    const where = action ? ` at action ${index} (${action.kind} ${action.rowKey})` : '';
    const message = `Transaction on ${tableName}/${partitionKey} failed${where}: ${describe(error)}`;
    const options = { cause: error };
    switch (failure.kind) {
      case 'conflict':
        return new TransactionFailedError(message, tableName, index, failure.reason, options);
      case 'rejected': {
        const keys = (action ? [action] : actions).map((a): readonly [string, string] => [
          partitionKey,
          a.rowKey,
        ]);
        const limit = limitOf(failure, { batch: knownIndex === undefined, actions: actions.length, keys });
        // A transaction too large as a whole is not the fault of the action the service happened to name.
        const blamed = limit === 'transaction_too_large' ? undefined : index;
        return new StoreRejectedError(refusedMessage(message, limit), tableName, limit, blamed, options);
      }
      case 'unavailable':
        return new StoreError(message, tableName, 'store_unavailable', options);
    }
  };

  /** Refuses, before sending, what the SDK would not carry faithfully (see `unrepresentable`). */
  const refuseUnrepresentable = (what: string, props: EntityProps, actionIndex?: number) => {
    const detail = unrepresentable(props);
    if (detail !== undefined) {
      throw new StoreRejectedError(
        `${what} refused for table ${tableName}: ${detail}`,
        tableName,
        'invalid_input',
        actionIndex,
      );
    }
  };

  const toStored = (
    entity: TableEntityResult<Record<string, unknown>>,
    partitionKey?: string,
  ): StoredEntity => ({
    partitionKey: entity.partitionKey ?? partitionKey ?? '',
    rowKey: entity.rowKey ?? '',
    etag: entity.etag,
    props: toProps(entity, tableName),
  });

  /** Every row matching `filter` (all pages), or a StoreError. */
  async function* query(
    what: string,
    filter: string | undefined,
    select: readonly string[] | undefined,
    partitionKey?: string,
  ): AsyncGenerator<StoredEntity> {
    await ensureTable();
    const queryOptions = {
      ...(filter === undefined ? {} : { filter }),
      ...(select === undefined ? {} : { select: [...select] }),
    };
    // The iterator follows continuation tokens: one request per page of up to 1,000 rows. A listing may
    // run as long as it has pages, so the deadline is per wait for the next row (in effect per page
    // request), and it does not run while the caller holds a row: a slow consumer is not a slow service.
    const watchdog = new AbortController();
    const entities = client
      .listEntities<Record<string, unknown>>({ queryOptions, abortSignal: watchdog.signal })
      [Symbol.asyncIterator]();
    try {
      while (true) {
        const timer = setTimeout(() => watchdog.abort(), timeoutMs);
        let next: IteratorResult<TableEntityResult<Record<string, unknown>>>;
        try {
          next = await entities.next();
        } finally {
          clearTimeout(timer);
        }
        if (next.done) return;
        yield toStored(next.value, partitionKey);
      }
    } catch (error) {
      if (error instanceof StoreError) throw error; // from `toProps`
      const cause = watchdog.signal.aborted ? new DeadlineExceeded(timeoutMs, { cause: error }) : error;
      throw rowError(cause, what, partitionKey ?? '*', '*');
    }
  }

  /** A one-action transaction as the single-entity operation: one simple request instead of a batch. */
  const transactOne = async (
    partitionKey: string,
    action: TransactionAction,
    actions: readonly TransactionAction[],
  ): Promise<TransactionResult> => {
    let etag: string | undefined;
    try {
      etag = await writeOne(partitionKey, action);
    } catch (error) {
      throw transactionError(error, partitionKey, actions, 0);
    }
    return { etags: etag ? new Map([[action.rowKey, etag]]) : new Map() };
  };

  /** The single-entity request equivalent to one transaction action; resolves to the row's new etag. */
  const writeOne = async (partitionKey: string, action: TransactionAction): Promise<string | undefined> => {
    switch (action.kind) {
      case 'create':
        return (
          await timed((o) => client.createEntity(entityOf(partitionKey, action.rowKey, action.props), o))
        ).etag;
      case 'upsert': {
        const entity = entityOf(partitionKey, action.rowKey, action.props);
        return (await timed((o) => client.upsertEntity(entity, 'Replace', o))).etag;
      }
      case 'update': {
        const entity = entityOf(partitionKey, action.rowKey, action.props);
        return (await timed((o) => client.updateEntity(entity, 'Replace', { ...o, etag: action.etag }))).etag;
      }
      case 'delete':
        // No etag: like the batch's delete action, it fails only when the row is absent.
        await timed((o) => client.deleteEntity(partitionKey, action.rowKey, o));
        return undefined;
    }
  };

  return {
    name: tableName,

    async get(partitionKey, rowKey) {
      await ensureTable();
      try {
        return toStored(
          await timed((o) => client.getEntity<Record<string, unknown>>(partitionKey, rowKey, o)),
        );
      } catch (error) {
        if (error instanceof StoreError) throw error; // from `toProps`
        const failure = classifyFailure(error);
        if (failure.kind === 'conflict' && failure.reason === 'not_found') return undefined;
        throw rowError(error, 'get', partitionKey, rowKey);
      }
    },

    async create(partitionKey, rowKey, props) {
      refuseUnrepresentable(`create ${partitionKey}/${rowKey}`, props);
      await ensureTable();
      try {
        const response = await timed((o) => client.createEntity(entityOf(partitionKey, rowKey, props), o));
        return { partitionKey, rowKey, etag: response.etag ?? '', props: { ...props } };
      } catch (error) {
        throw rowError(error, 'create', partitionKey, rowKey);
      }
    },

    async upsert(partitionKey, rowKey, props) {
      refuseUnrepresentable(`upsert ${partitionKey}/${rowKey}`, props);
      await ensureTable();
      try {
        await timed((o) => client.upsertEntity(entityOf(partitionKey, rowKey, props), 'Replace', o));
      } catch (error) {
        throw rowError(error, 'upsert', partitionKey, rowKey);
      }
    },

    async update(partitionKey, rowKey, props, etag) {
      refuseUnrepresentable(`update ${partitionKey}/${rowKey}`, props);
      await ensureTable();
      try {
        const response = await timed((o) =>
          client.updateEntity(entityOf(partitionKey, rowKey, props), 'Replace', { ...o, etag }),
        );
        return { partitionKey, rowKey, etag: response.etag ?? '', props: { ...props } };
      } catch (error) {
        throw rowError(error, 'update', partitionKey, rowKey);
      }
    },

    async delete(partitionKey, rowKey, etag) {
      await ensureTable();
      try {
        await timed((o) =>
          client.deleteEntity(partitionKey, rowKey, etag === undefined ? o : { ...o, etag }),
        );
        return true;
      } catch (error) {
        const failure = classifyFailure(error);
        if (failure.kind === 'conflict' && failure.reason === 'not_found') return false;
        throw rowError(error, 'delete', partitionKey, rowKey);
      }
    },

    async list(partitionKey, options: ListOptions = {}) {
      const range = rangeOf(options);
      const filter = range
        ? odata`PartitionKey eq ${partitionKey} and RowKey ge ${range.from} and RowKey lt ${range.to}`
        : odata`PartitionKey eq ${partitionKey}`;
      const select = options.select ? ['RowKey', ...options.select] : undefined;
      const rows: StoredEntity[] = [];
      for await (const row of query('list', filter, select, partitionKey)) rows.push(row);
      return rows;
    },

    async listPage(partitionKey, options: ListPageOptions) {
      const refused =
        pageRefusal(options) ?? (options.cursor === undefined ? undefined : cursorRefusal(options.cursor));
      if (refused !== undefined) {
        const message = `listPage ${partitionKey} refused for table ${tableName}: ${refused}`;
        throw new StoreRejectedError(message, tableName, 'invalid_input');
      }
      await ensureTable();
      const select = options.select ? ['RowKey', ...options.select] : undefined;
      try {
        // Only the first page: one request, under the call deadline like every other. The service may
        // answer fewer rows than `top` and still a token.
        const page = await timed(({ abortSignal }) =>
          client
            .listEntities<Record<string, unknown>>({
              queryOptions: { filter: pageFilter(partitionKey, options), ...(select ? { select } : {}) },
              abortSignal,
            })
            .byPage({
              maxPageSize: options.top,
              ...(options.cursor === undefined ? {} : { continuationToken: options.cursor }),
            })
            .next(),
        );
        if (page.done) return { rows: [], nextCursor: undefined };
        return {
          rows: page.value.map((entity) => toStored(entity, partitionKey)),
          nextCursor: page.value.continuationToken || undefined,
        };
      } catch (error) {
        if (error instanceof StoreError) throw error; // from `toProps`
        throw rowError(error, 'listPage', partitionKey, '*');
      }
    },

    async transact(partitionKey, actions) {
      if (actions.length === 0) return { etags: new Map() };
      actions.forEach((action, index) => {
        if (action.kind !== 'delete') {
          refuseUnrepresentable(`transaction on ${partitionKey}`, action.props, index);
        }
      });
      await ensureTable();
      const [only] = actions;
      if (only && actions.length === 1) return transactOne(partitionKey, only, actions);
      let subResponses: readonly TableTransactionEntityResponse[];
      try {
        ({ subResponses } = await timed((o) =>
          client.submitTransaction(
            actions.map((action) => toSdkAction(partitionKey, action)),
            o,
          ),
        ));
      } catch (error) {
        throw transactionError(error, partitionKey, actions);
      }
      return { etags: etagsOf(actions, subResponses) };
    },

    scan(options: ScanOptions): AsyncIterable<StoredEntity> {
      const plan = scanPlan(options);
      if (plan === undefined) return (async function* () {})();
      const select = options.select ? ['PartitionKey', 'RowKey', ...options.select] : undefined;
      const rows = query(`scan ${options.partitionPrefix ?? ''}*`, plan.filter, select);
      return plan.keep === undefined ? rows : keepOnly(rows, plan.keep);
    },

    async ping() {
      await ensureTable();
      try {
        // A point read of a row that never exists: one cheap round trip that proves auth and reachability.
        await timed((o) => client.getEntity('health', 'ping', o));
      } catch (error) {
        const failure = classifyFailure(error);
        if (failure.kind === 'conflict' && failure.reason === 'not_found') return;
        throw rowError(error, 'ping', 'health', 'ping');
      }
    },
  };
}

/**
 * A call that got no answer within its deadline (`timeoutMs`). Internal to this adapter: it reaches
 * callers as the `cause` of a `StoreError('store_unavailable')`, which is all they need to know.
 */
class DeadlineExceeded extends Error {
  constructor(timeoutMs: number, options: { readonly cause: unknown }) {
    super(`no answer within ${timeoutMs} ms (the SDK's retries included)`, options);
    this.name = 'DeadlineExceeded';
  }
}

/** The `$filter` of one page: the partition, the prefix or range, and keys after `after`. */
function pageFilter(partitionKey: string, options: ListPageOptions): string {
  const range = rangeOf(options);
  const clauses = [odata`PartitionKey eq ${partitionKey}`];
  if (range) clauses.push(odata`RowKey ge ${range.from} and RowKey lt ${range.to}`);
  if (options.after !== undefined) clauses.push(odata`RowKey gt ${options.after}`);
  return clauses.join(' and ');
}

/**
 * The SDK's continuation token is base64 of `{"nextPartitionKey", "nextRowKey"}` and it parses it without
 * a guard (a foreign string fails as a `SyntaxError`, which would read as an outage). Refused here instead,
 * as the memory twin refuses a cursor it did not return.
 */
function cursorRefusal(cursor: string): string | undefined {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, 'base64').toString('utf8'));
    if (typeof parsed === 'object' && parsed !== null && 'nextPartitionKey' in parsed) {
      const { nextPartitionKey } = parsed;
      const nextRowKey = 'nextRowKey' in parsed ? parsed.nextRowKey : undefined;
      if (
        typeof nextPartitionKey === 'string' &&
        (nextRowKey === undefined || typeof nextRowKey === 'string')
      )
        return undefined;
    }
  } catch {
    // Not base64 JSON: refused below.
  }
  return 'not a cursor listPage returned';
}

/** What a failed request means, decided by HTTP status and the service's error code only. */
type Failure =
  | { readonly kind: 'conflict'; readonly reason: ConflictReason }
  | { readonly kind: 'rejected'; readonly status: number; readonly code: string | undefined }
  | { readonly kind: 'unavailable'; readonly tableMissing: boolean };

/** Codes about the table rather than the row: a 404/409 with one of these is not a row-level outcome. */
const TABLE_CODES = new Set(['TableNotFound', 'TableBeingDeleted']);

function classify(error: unknown): Failure {
  // No status: the request never got an answer (network, DNS, timeout).
  if (!(error instanceof RestError) || error.statusCode === undefined) {
    return { kind: 'unavailable', tableMissing: false };
  }
  const code = serviceCode(error);
  if (code !== undefined && TABLE_CODES.has(code)) {
    return { kind: 'unavailable', tableMissing: code === 'TableNotFound' };
  }
  switch (error.statusCode) {
    case 409:
      return { kind: 'conflict', reason: 'exists' };
    case 412:
      return { kind: 'conflict', reason: 'etag_mismatch' };
    case 404:
      return { kind: 'conflict', reason: 'not_found' };
    case 400:
    case 413:
      return { kind: 'rejected', status: error.statusCode, code };
    default:
      // 5xx, 403 (auth), 429/503 (throttling) and anything unexpected: the store is not usable right now.
      return { kind: 'unavailable', tableMissing: false };
  }
}

/**
 * The service's error code. For a transaction the SDK copies the sub-response's odata code into
 * `RestError.code`; for single-entity operations it leaves `code` empty, and the code is in the
 * `x-ms-error-code` response header the service sets on every error.
 */
function serviceCode(error: RestError): string | undefined {
  return error.code ?? error.response?.headers.get('x-ms-error-code') ?? undefined;
}

/** What a refused request was, for choosing the limit it broke. */
interface RefusedRequest {
  /** Sent as an entity-group transaction (as opposed to a single-entity operation). */
  readonly batch: boolean;
  /** Number of actions, for a batch. */
  readonly actions?: number;
  /** The keys of the refused row, or of every row when the service did not say which one. */
  readonly keys: ReadonlyArray<readonly [string, string]>;
}

/**
 * The limit a refused request broke. Specific service codes name it; the service's generic codes
 * (`InvalidInput`, `OutOfRangeInput`, which it also uses for an invalid key and for a batch of too many
 * operations) do not, so for those we look at what we sent, never at the message text.
 */
function limitOf(
  failure: { readonly status: number; readonly code: string | undefined },
  request: RefusedRequest,
): StoreLimit {
  switch (failure.code) {
    case 'PropertyValueTooLarge':
      return 'property_too_large';
    case 'EntityTooLarge':
      return 'entity_too_large';
    case 'TooManyProperties':
      return 'too_many_properties';
    case 'InvalidDuplicateRow':
      return 'duplicate_row_in_transaction';
  }
  // 413 (RequestBodyTooLarge): the whole payload was too big; for a single-entity request that is the entity.
  if (failure.status === 413 || failure.code === 'RequestBodyTooLarge') {
    return request.batch ? 'transaction_too_large' : 'entity_too_large';
  }
  if (request.batch && (request.actions ?? 0) > TABLE_LIMITS.transactionActions)
    return 'transaction_too_large';
  if (request.keys.some(([pk, rk]) => !validKey(pk) || !validKey(rk))) return 'key_invalid';
  return 'invalid_input';
}

function validKey(key: string): boolean {
  return key.length <= TABLE_LIMITS.keyLength && !FORBIDDEN_KEY_CHARACTERS.test(key);
}

const REFUSAL_ADVICE: Record<StoreLimit, string> = {
  key_invalid: `keys must be at most ${TABLE_LIMITS.keyLength} characters, without / \\ # ? or control characters`,
  property_too_large: `string properties must be at most ${TABLE_LIMITS.stringLength} characters`,
  entity_too_large: `an entity must be at most ${TABLE_LIMITS.entityBytes} bytes (see entitySize)`,
  too_many_properties: `an entity may have at most ${TABLE_LIMITS.properties} properties`,
  transaction_too_large: `a transaction may have at most ${TABLE_LIMITS.transactionActions} actions and ${TABLE_LIMITS.transactionBytes} bytes`,
  duplicate_row_in_transaction: 'a transaction may touch each row only once',
  invalid_input: 'the service found the request malformed',
};

function refusedMessage(message: string, limit: StoreLimit): string {
  return `${message} (refused, ${limit}: ${REFUSAL_ADVICE[limit]}; retrying cannot help)`;
}

/**
 * The failing action of a transaction. The service reports it only as the prefix "<index>:" of the odata
 * error message (documented Table Storage behaviour for entity-group transactions), and the SDK passes
 * that message through as `RestError.message` without parsing it. So this one fact is read from the
 * message text; what kind of failure it was is decided by status and code alone (`classify`).
 */
function failingIndex(error: unknown, actionCount: number): number | undefined {
  if (!(error instanceof RestError)) return undefined;
  const prefix = /^(\d+):/.exec(error.message)?.[1];
  if (prefix === undefined) return undefined;
  const index = Number(prefix);
  return index < actionCount ? index : undefined;
}

function describe(error: unknown): string {
  if (error instanceof RestError) {
    const code = serviceCode(error);
    return error.statusCode === undefined
      ? `${error.code ?? 'no response'} (${error.message})`
      : `HTTP ${error.statusCode}${code ? ` ${code}` : ''}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * The new ETag of every written row. The service answers a changeset with one sub-response per action, in
 * action order, and the SDK keeps that order (it parses a row key only for inserts), so they pair by index.
 * Should the counts ever differ, no ETags are claimed rather than wrong ones: the rows were written, and a
 * caller without an ETag reads the row again.
 */
function etagsOf(
  actions: readonly TransactionAction[],
  subResponses: readonly TableTransactionEntityResponse[],
): Map<string, string> {
  const etags = new Map<string, string>();
  if (subResponses.length !== actions.length) return etags;
  actions.forEach((action, index) => {
    // The SDK takes the header line up to its end, which may keep the "\r" of the "\r\n".
    const etag = subResponses[index]?.etag?.trim();
    if (action.kind !== 'delete' && etag) etags.set(action.rowKey, etag);
  });
  return etags;
}

/**
 * The scan's filter: a partition-key range for the prefix, a lower bound to resume after, and the row
 * keys as an OR of equalities and ranges. When those would exceed the service's comparison limit, the
 * service filters by the row keys' overall range and `keep` matches each row exactly. `undefined` when
 * nothing can match.
 */
function scanPlan(
  options: ScanOptions,
): { readonly filter: string | undefined; readonly keep?: (rowKey: string) => boolean } | undefined {
  const clauses: string[] = [];
  let comparisons = 0;
  const prefix = options.partitionPrefix;
  if (prefix !== undefined && prefix !== '') {
    clauses.push(odata`PartitionKey ge ${prefix} and PartitionKey lt ${prefixEnd(prefix)}`);
    comparisons += 2;
  }
  if (options.partitionsAfter !== undefined) {
    clauses.push(odata`PartitionKey gt ${options.partitionsAfter}`);
    comparisons += 1;
  }
  const matches = options.rowKeys;
  let keep: ((rowKey: string) => boolean) | undefined;
  if (matches !== undefined) {
    if (matches.length === 0) return undefined;
    const cost = matches.reduce((sum, match) => sum + (typeof match === 'string' ? 1 : 2), 0);
    if (comparisons + cost <= MAX_FILTER_COMPARISONS) {
      const alternatives = matches.map((match) =>
        typeof match === 'string'
          ? odata`RowKey eq ${match}`
          : odata`(RowKey ge ${match.from} and RowKey lt ${match.to})`,
      );
      clauses.push(`(${alternatives.join(' or ')})`);
    } else {
      clauses.push(envelope(matches));
      keep = (rowKey) => matches.some((match) => rowKeyMatches(rowKey, match));
    }
  }
  const filter = clauses.length === 0 ? undefined : clauses.join(' and ');
  return keep === undefined ? { filter } : { filter, keep };
}

/** One range covering every key and range of `matches` (two comparisons). */
function envelope(matches: ReadonlyArray<string | RowKeyRange>): string {
  const lowest = matches.map((match) => (typeof match === 'string' ? match : match.from)).reduce(min);
  const keys = matches.filter((match): match is string => typeof match === 'string');
  const ends = matches
    .filter((match): match is RowKeyRange => typeof match !== 'string')
    .map((range) => range.to);
  const highestKey = keys.length > 0 ? keys.reduce(max) : undefined;
  const highestEnd = ends.length > 0 ? ends.reduce(max) : undefined;
  // A key is included (`le`), a range's end is not (`lt`); whichever reaches further bounds the envelope.
  return highestKey !== undefined && (highestEnd === undefined || highestKey >= highestEnd)
    ? odata`RowKey ge ${lowest} and RowKey le ${highestKey}`
    : odata`RowKey ge ${lowest} and RowKey lt ${highestEnd ?? lowest}`;
}

const min = (a: string, b: string) => (b < a ? b : a);
const max = (a: string, b: string) => (b > a ? b : a);

function rowKeyMatches(rowKey: string, match: string | RowKeyRange): boolean {
  return typeof match === 'string' ? rowKey === match : rowKey >= match.from && rowKey < match.to;
}

async function* keepOnly(
  rows: AsyncIterable<StoredEntity>,
  keep: (rowKey: string) => boolean,
): AsyncGenerator<StoredEntity> {
  for await (const row of rows) if (keep(row.rowKey)) yield row;
}

/**
 * Why a write cannot be sent as it is, or `undefined`. Refused here, before sending, because the SDK would
 * not carry it faithfully rather than because the service refuses it: a non-finite number is serialised as
 * JSON `null` (the property silently vanishes), and the SDK maps `partitionKey`, `rowKey`, `etag` and
 * `timestamp` onto the keys and system fields (the service's own names and odata annotations likewise).
 * The memory twin mirrors this (`unrepresentable` in `memory-table.ts`).
 */
function unrepresentable(props: EntityProps): string | undefined {
  for (const [property, value] of Object.entries(props)) {
    if (RESERVED_PROPERTY_NAME.test(property))
      return `property name ${property} is reserved for keys or metadata`;
    if (typeof value === 'number' && !Number.isFinite(value)) {
      return `${property} is ${value}; only finite numbers can be stored`;
    }
  }
  return undefined;
}

const RESERVED_PROPERTY_NAME =
  /^(?:partitionKey|rowKey|etag|timestamp|PartitionKey|RowKey|Timestamp)$|^odata\.|@odata\./;

/** The SDK entity; the keys come last so that no property can override them. */
function entityOf(partitionKey: string, rowKey: string, props: EntityProps) {
  return { ...props, partitionKey, rowKey };
}

function toSdkAction(partitionKey: string, action: TransactionAction): SdkAction {
  switch (action.kind) {
    case 'create':
      return ['create', entityOf(partitionKey, action.rowKey, action.props)];
    case 'upsert':
      return ['upsert', entityOf(partitionKey, action.rowKey, action.props), 'Replace'];
    case 'update':
      return [
        'update',
        entityOf(partitionKey, action.rowKey, action.props),
        'Replace',
        { etag: action.etag },
      ];
    case 'delete':
      return ['delete', { partitionKey, rowKey: action.rowKey }];
  }
}

function toProps(entity: Record<string, unknown>, tableName: string): EntityProps {
  const props: Record<string, EntityValue> = {};
  for (const [key, value] of Object.entries(entity)) {
    if (SYSTEM_PROPS.has(key) || key.startsWith('odata.')) continue;
    // A `$select`ed property the row does not have comes back as null: it is absent, as in the memory twin.
    if (value === null || value === undefined) continue;
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      props[key] = value;
    else if (typeof value === 'bigint') props[key] = Number(value);
    else if (value instanceof Date) props[key] = value.toISOString();
    else throw new StoreError(`Unsupported property type for ${key} in table ${tableName}`, tableName);
  }
  return props;
}
