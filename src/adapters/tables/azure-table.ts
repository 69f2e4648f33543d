import {
  odata,
  RestError,
  type TransactionAction as SdkAction,
  TableClient,
  type TableEntityResult,
} from '@azure/data-tables';
import type { TokenCredential } from '@azure/identity';
import {
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  type EntityValue,
  EtagMismatchError,
  type ListOptions,
  prefixEnd,
  type StoredEntity,
  StoreError,
  type TransactionAction,
  TransactionFailedError,
} from '../../billing/store.js';

/** How to reach Table Storage: a connection string (Azurite, keys) or an endpoint with an Entra ID credential. */
export type TableConnection =
  | { readonly kind: 'connectionString'; readonly connectionString: string }
  | { readonly kind: 'endpoint'; readonly endpoint: string; readonly credential: TokenCredential };

const SYSTEM_PROPS = new Set(['partitionKey', 'rowKey', 'etag', 'timestamp']);

/**
 * An `EntityTable` on Azure Table Storage (or Azurite). The table is created on first use, once.
 * A missing row reads as `undefined`; every other failure (network, auth, throttling) throws, so an
 * outage never looks like "not found".
 */
export function createAzureTable(
  connection: TableConnection,
  tableName: string,
  options: {
    /** Retries of transient failures inside the SDK (exponential back-off). @default 3 */
    readonly maxRetries?: number;
  } = {},
): EntityTable {
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
    ready ??= client.createTable().catch((error: unknown) => {
      ready = undefined; // let the next call try again rather than caching a transient failure
      const reason = error instanceof Error ? error.message : String(error);
      throw new StoreError(`create table ${tableName}: ${reason}`, tableName);
    });
    return ready;
  };

  const fail = (error: unknown, what: string): never => {
    if (error instanceof RestError) {
      const message = `${what} on table ${tableName}: ${error.code ?? error.statusCode}`;
      if (error.statusCode === 409) throw new EntityExistsError(message, tableName);
      if (error.statusCode === 412) throw new EtagMismatchError(message, tableName);
      if (error.statusCode === 404) throw new EntityNotFoundError(message, tableName);
      throw new StoreError(`${message}: ${error.message}`, tableName);
    }
    throw error;
  };

  const toStored = (entity: TableEntityResult<Record<string, unknown>>): StoredEntity => ({
    partitionKey: entity.partitionKey ?? '',
    rowKey: entity.rowKey ?? '',
    etag: entity.etag,
    props: toProps(entity, tableName),
  });

  return {
    name: tableName,

    async get(partitionKey, rowKey) {
      await ensureTable();
      try {
        return toStored(await client.getEntity<Record<string, unknown>>(partitionKey, rowKey));
      } catch (error) {
        if (error instanceof RestError && error.statusCode === 404) return undefined;
        return fail(error, `get ${partitionKey}/${rowKey}`);
      }
    },

    async create(partitionKey, rowKey, props) {
      await ensureTable();
      try {
        const response = await client.createEntity({ partitionKey, rowKey, ...props });
        return { partitionKey, rowKey, etag: response.etag ?? '', props };
      } catch (error) {
        return fail(error, `create ${partitionKey}/${rowKey}`);
      }
    },

    async upsert(partitionKey, rowKey, props) {
      await ensureTable();
      try {
        await client.upsertEntity({ partitionKey, rowKey, ...props }, 'Replace');
      } catch (error) {
        fail(error, `upsert ${partitionKey}/${rowKey}`);
      }
    },

    async update(partitionKey, rowKey, props, etag) {
      await ensureTable();
      try {
        const response = await client.updateEntity({ partitionKey, rowKey, ...props }, 'Replace', { etag });
        return { partitionKey, rowKey, etag: response.etag ?? '', props };
      } catch (error) {
        return fail(error, `update ${partitionKey}/${rowKey}`);
      }
    },

    async delete(partitionKey, rowKey, etag) {
      await ensureTable();
      try {
        await client.deleteEntity(partitionKey, rowKey, etag === undefined ? {} : { etag });
        return true;
      } catch (error) {
        if (error instanceof RestError && error.statusCode === 404) return false;
        return fail(error, `delete ${partitionKey}/${rowKey}`);
      }
    },

    async list(partitionKey, options: ListOptions = {}) {
      await ensureTable();
      const rows: StoredEntity[] = [];
      try {
        const pages = client.listEntities<Record<string, unknown>>({
          queryOptions: {
            filter: rangeFilter(partitionKey, options.prefix),
            ...(options.select ? { select: ['RowKey', ...options.select] } : {}),
          },
        });
        for await (const entity of pages) rows.push(toStored(entity));
      } catch (error) {
        fail(error, `list ${partitionKey}/${options.prefix ?? ''}*`);
      }
      return rows;
    },

    async count(partitionKey, prefix) {
      await ensureTable();
      let n = 0;
      try {
        const pages = client.listEntities({
          queryOptions: { filter: rangeFilter(partitionKey, prefix), select: ['RowKey'] },
        });
        for await (const _ of pages) n++;
      } catch (error) {
        fail(error, `count ${partitionKey}/${prefix}*`);
      }
      return n;
    },

    async transact(partitionKey, actions) {
      if (actions.length === 0) return;
      await ensureTable();
      try {
        await client.submitTransaction(actions.map((action) => toSdkAction(partitionKey, action)));
      } catch (error) {
        if (error instanceof RestError) {
          // The service reports the failing sub-request as "<index>:<message>".
          const index = /^(\d+):/.exec(error.message)?.[1];
          const reason =
            error.statusCode === 409
              ? 'exists'
              : error.statusCode === 412
                ? 'etag_mismatch'
                : error.statusCode === 404
                  ? 'not_found'
                  : 'other';
          throw new TransactionFailedError(
            `Transaction on ${tableName}/${partitionKey} failed: ${error.code ?? error.statusCode} ${error.message.split('\n')[0]}`,
            tableName,
            index === undefined ? undefined : Number(index),
            reason,
          );
        }
        throw error;
      }
    },

    async ping() {
      await ensureTable();
      try {
        // A point read of a row that never exists: one cheap round trip that proves auth and reachability.
        await client.getEntity('health', 'ping');
      } catch (error) {
        if (error instanceof RestError && error.statusCode === 404) return;
        fail(error, 'ping');
      }
    },
  };
}

function rangeFilter(partitionKey: string, prefix: string | undefined): string {
  if (prefix === undefined || prefix === '') return odata`PartitionKey eq ${partitionKey}`;
  return odata`PartitionKey eq ${partitionKey} and RowKey ge ${prefix} and RowKey lt ${prefixEnd(prefix)}`;
}

function toSdkAction(partitionKey: string, action: TransactionAction): SdkAction {
  switch (action.kind) {
    case 'create':
      return ['create', { partitionKey, rowKey: action.rowKey, ...action.props }];
    case 'upsert':
      return ['upsert', { partitionKey, rowKey: action.rowKey, ...action.props }, 'Replace'];
    case 'update':
      return [
        'update',
        { partitionKey, rowKey: action.rowKey, ...action.props },
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
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean')
      props[key] = value;
    else if (typeof value === 'bigint') props[key] = Number(value);
    else if (value instanceof Date) props[key] = value.toISOString();
    else throw new StoreError(`Unsupported property type for ${key} in table ${tableName}`, tableName);
  }
  return props;
}
