import type { EntityTable } from '../../billing/store.js';

/** The storage calls of the port, by name. */
export const TABLE_METHODS = [
  'get',
  'create',
  'upsert',
  'update',
  'delete',
  'list',
  'listPage',
  'transact',
  'scan',
  'ping',
] as const;
export type TableMethod = (typeof TABLE_METHODS)[number];

/**
 * Decides how one storage call runs: `run` performs it. Used to count round trips (benchmarks, tests,
 * telemetry) and to inject failures (tests).
 */
export type CallObserver = <R>(
  method: TableMethod,
  partitionKey: string,
  run: () => Promise<R>,
) => Promise<R>;

/**
 * An `EntityTable` whose every call goes through `observe`. A scan is observed as one call that
 * collects its rows (only maintenance jobs scan).
 */
export function observeTable(table: EntityTable, observe: CallObserver): EntityTable {
  return {
    name: table.name,
    get: (pk, rk) => observe('get', pk, () => table.get(pk, rk)),
    create: (pk, rk, props) => observe('create', pk, () => table.create(pk, rk, props)),
    upsert: (pk, rk, props) => observe('upsert', pk, () => table.upsert(pk, rk, props)),
    update: (pk, rk, props, etag) => observe('update', pk, () => table.update(pk, rk, props, etag)),
    delete: (pk, rk, etag) => observe('delete', pk, () => table.delete(pk, rk, etag)),
    list: (pk, options) => observe('list', pk, () => table.list(pk, options)),
    listPage: (pk, options) => observe('listPage', pk, () => table.listPage(pk, options)),
    transact: (pk, actions) => observe('transact', pk, () => table.transact(pk, actions)),
    async *scan(options) {
      const rows = await observe('scan', options.partitionPrefix ?? '', async () => {
        const all = [];
        for await (const row of table.scan(options)) all.push(row);
        return all;
      });
      yield* rows;
    },
    ping: () => observe('ping', '', () => table.ping()),
  };
}
