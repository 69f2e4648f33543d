import {
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  EtagMismatchError,
  type StoredEntity,
  type TransactionAction,
  TransactionFailedError,
} from '../../billing/store.js';

/**
 * An in-memory `EntityTable` with the same semantics as Table Storage (etags, conditional writes,
 * all-or-nothing transactions). It exists to make unit tests fast; it is held to the same contract
 * suite as the Azure adapter (`tests/integration/entity-table.contract.test.ts`). Never used at run time.
 */
export function createMemoryTable(name = 'memory'): EntityTable {
  const partitions = new Map<string, Map<string, StoredEntity>>();
  let version = 0;
  const nextEtag = () => `W/"${++version}"`;
  const partition = (pk: string) => {
    let rows = partitions.get(pk);
    if (!rows) {
      rows = new Map();
      partitions.set(pk, rows);
    }
    return rows;
  };
  const put = (pk: string, rk: string, props: EntityProps): StoredEntity => {
    const stored = { partitionKey: pk, rowKey: rk, etag: nextEtag(), props: { ...props } };
    partition(pk).set(rk, stored);
    return stored;
  };
  const sorted = (pk: string, prefix = '') =>
    [...partition(pk).values()]
      .filter((row) => row.rowKey.startsWith(prefix))
      .sort((a, b) => (a.rowKey < b.rowKey ? -1 : a.rowKey > b.rowKey ? 1 : 0));

  // Async like the real thing, so callers cannot accidentally depend on synchronous completion.
  const tick = () => Promise.resolve();

  return {
    name,
    async get(pk, rk) {
      await tick();
      return partition(pk).get(rk);
    },
    async create(pk, rk, props) {
      await tick();
      if (partition(pk).has(rk)) throw new EntityExistsError(`create ${pk}/${rk}: EntityAlreadyExists`, name);
      return put(pk, rk, props);
    },
    async upsert(pk, rk, props) {
      await tick();
      put(pk, rk, props);
    },
    async update(pk, rk, props, etag) {
      await tick();
      const current = partition(pk).get(rk);
      if (!current) throw new EntityNotFoundError(`update ${pk}/${rk}: ResourceNotFound`, name);
      if (current.etag !== etag)
        throw new EtagMismatchError(`update ${pk}/${rk}: UpdateConditionNotSatisfied`, name);
      return put(pk, rk, props);
    },
    async delete(pk, rk, etag) {
      await tick();
      const current = partition(pk).get(rk);
      if (!current) return false;
      if (etag !== undefined && current.etag !== etag) {
        throw new EtagMismatchError(`delete ${pk}/${rk}: UpdateConditionNotSatisfied`, name);
      }
      partition(pk).delete(rk);
      return true;
    },
    async list(pk, options = {}) {
      await tick();
      return sorted(pk, options.prefix);
    },
    async count(pk, prefix) {
      await tick();
      return sorted(pk, prefix).length;
    },
    async transact(pk, actions: readonly TransactionAction[]) {
      await tick();
      if (actions.length > 100)
        throw new TransactionFailedError('At most 100 actions per transaction', name, undefined, 'other');
      const rows = partition(pk);
      const keys = new Set<string>();
      // Validate every action first, then apply: all or nothing, like the service.
      actions.forEach((action, index) => {
        if (keys.has(action.rowKey)) {
          throw new TransactionFailedError(
            `${index}: duplicate row key in one transaction`,
            name,
            index,
            'other',
          );
        }
        keys.add(action.rowKey);
        const current = rows.get(action.rowKey);
        const fail = (reason: 'exists' | 'etag_mismatch' | 'not_found') => {
          throw new TransactionFailedError(
            `${index}: ${reason} on ${pk}/${action.rowKey}`,
            name,
            index,
            reason,
          );
        };
        if (action.kind === 'create' && current) fail('exists');
        if (action.kind === 'update' && !current) fail('not_found');
        if (action.kind === 'update' && current && current.etag !== action.etag) fail('etag_mismatch');
        if (action.kind === 'delete' && !current) fail('not_found');
      });
      for (const action of actions) {
        if (action.kind === 'delete') rows.delete(action.rowKey);
        else put(pk, action.rowKey, action.props);
      }
    },
    async ping() {
      await tick();
    },
  };
}
