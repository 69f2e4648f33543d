import type { OwnedItem } from '../access/locks.js';
import { type OwnerId, parseWorkspaceKey } from '../ids.js';
import type { EntityTable, StoredEntity } from '../store.js';
import { type ItemKind, itemPrefix } from './keys.js';
import { CorruptRowError, type ItemRow, itemRowSchema, parseRow } from './rows.js';

/** An item row, parsed: where it lives and its claim. */
export interface ItemRecord extends OwnedItem {
  readonly kind: ItemKind;
  readonly row: ItemRow;
  readonly etag: string;
}

/** Parses `item|<kind>|<workspace>|<id>`. @throws CorruptRowError */
export function parseItemRow(row: StoredEntity): ItemRecord {
  const [, kind, workspace, id] = row.rowKey.split('|');
  if ((kind !== 'workflow' && kind !== 'credential') || workspace === undefined || id === undefined) {
    throw new CorruptRowError(row.partitionKey, row.rowKey, 'not an item key');
  }
  const data = parseRow(itemRowSchema, row);
  let parsedWorkspace: OwnedItem['workspace'];
  try {
    parsedWorkspace = parseWorkspaceKey(workspace);
  } catch (error) {
    throw new CorruptRowError(row.partitionKey, row.rowKey, String(error));
  }
  return { kind, id, workspace: parsedWorkspace, createdAt: data.createdAt, row: data, etag: row.etag };
}

/** Every live workflow and credential of an owner (one range query; tombstones left out). */
export async function listOwnedItems(
  table: EntityTable,
  ownerId: OwnerId,
): Promise<{ workflows: ItemRecord[]; credentials: ItemRecord[] }> {
  const rows = await table.list(ownerId, { prefix: 'item|' });
  const workflows: ItemRecord[] = [];
  const credentials: ItemRecord[] = [];
  for (const row of rows) {
    const item = parseItemRow(row);
    if (item.row.dead === true) continue;
    (item.kind === 'workflow' ? workflows : credentials).push(item);
  }
  return { workflows, credentials };
}

/** Live items of one kind under a key prefix (one workspace, say). */
export async function listItemsUnder(
  table: EntityTable,
  ownerId: OwnerId,
  prefix: string,
): Promise<ItemRecord[]> {
  if (!prefix.startsWith(itemPrefix('workflow')) && !prefix.startsWith(itemPrefix('credential'))) {
    throw new Error(`listItemsUnder needs an item prefix, got ${prefix}`);
  }
  return (await table.list(ownerId, { prefix })).map(parseItemRow);
}
