import type { EntityTable, ListOptions, StoredEntity } from '../store.js';

/**
 * Up to `count` rows of one partition's prefix or range, in key order, after `after` when given: as many
 * `listPage` requests as it takes, since Table Storage may answer a page short and say where to go on. No
 * more than `count` rows are ever read (ask for one more than a page to learn whether another follows).
 */
export async function readRows(
  table: EntityTable,
  partitionKey: string,
  options: ListOptions & { readonly after?: string | undefined },
  count: number,
): Promise<StoredEntity[]> {
  const { after, ...query } = options;
  const rows: StoredEntity[] = [];
  let cursor: string | undefined;
  do {
    const page = await table.listPage(partitionKey, {
      ...query,
      top: count - rows.length,
      ...(after === undefined ? {} : { after }),
      ...(cursor === undefined ? {} : { cursor }),
    });
    rows.push(...page.rows);
    cursor = page.nextCursor;
  } while (cursor !== undefined && rows.length < count);
  return rows;
}
