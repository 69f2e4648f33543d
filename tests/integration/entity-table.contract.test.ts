import { randomBytes } from 'node:crypto';
import { TableClient } from '@azure/data-tables';
import { describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import {
  EntityExistsError,
  EntityNotFoundError,
  type EntityProps,
  type EntityTable,
  EtagMismatchError,
  type ListPageOptions,
  type ScanOptions,
  type StoredEntity,
  StoreError,
  StoreRejectedError,
  TABLE_LIMITS,
  type TransactionAction,
  TransactionFailedError,
} from '../../src/billing/store.js';
import { freePort } from '../../src/local/azurite.js';

/**
 * One contract, two implementations: the in-memory table that makes unit tests fast must behave like
 * Table Storage (here Azurite), and refuse what it refuses, or the unit tests prove nothing.
 */

/** A table name no other test uses, so tests run in parallel on one Azurite. */
const uniqueTableName = () => `t${randomBytes(6).toString('hex')}contract`;
const azurite = (maxRetries?: number) =>
  createAzureTable(
    { kind: 'connectionString', connectionString: inject('azuriteConnection') },
    uniqueTableName(),
    maxRetries === undefined ? {} : { maxRetries },
  );

const implementations: Array<[string, () => EntityTable]> = [
  ['memory', () => createMemoryTable()],
  ['azurite', () => azurite()],
];

/** The error `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => expect.unreachable('expected the call to fail'),
    (error: unknown) => error,
  );
}

async function refusal(promise: Promise<unknown>): Promise<StoreRejectedError> {
  const error = await rejection(promise);
  if (!(error instanceof StoreRejectedError))
    throw new Error('expected a StoreRejectedError', { cause: error });
  expect(error.code).toBe('store_rejected');
  return error;
}

async function conflict(promise: Promise<unknown>): Promise<TransactionFailedError> {
  const error = await rejection(promise);
  if (!(error instanceof TransactionFailedError)) {
    throw new Error('expected a TransactionFailedError', { cause: error });
  }
  expect(error.code).toBe('transaction_conflict');
  return error;
}

/** `count` string properties of `length` ASCII characters each. */
const strings = (count: number, length: number): EntityProps =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [`s${i}`, 'x'.repeat(length)]));

const upserts = (count: number, props: (i: number) => EntityProps = () => ({})): TransactionAction[] =>
  Array.from({ length: count }, (_, i) => ({
    kind: 'upsert',
    rowKey: `r${String(i).padStart(3, '0')}`,
    props: props(i),
  }));

async function collect(rows: AsyncIterable<StoredEntity>): Promise<string[]> {
  const keys: string[] = [];
  for await (const row of rows) keys.push(`${row.partitionKey}/${row.rowKey}`);
  return keys;
}

// Sizes chosen so that Table Storage's measure (UTF-16, `entitySize`) and Azurite's (the UTF-8 request
// body against 1 MB for an entity, 4 MB for a batch) agree without doubt:
/** ~2.4 MB by `entitySize`, ~1.2 MB of UTF-8 body: refused by both. */
const OVER_ONE_MIB = strings(40, 30_000);
/** ~0.9 MB by `entitySize`, ~0.45 MB of UTF-8 body: accepted by both. */
const UNDER_ONE_MIB = strings(15, 30_000);

describe.each(implementations)('EntityTable contract: %s', (_name, make) => {
  it('reads a missing row as undefined and a created row with its props and an etag', async () => {
    const table = make();
    expect(await table.get('p', 'missing')).toBeUndefined();
    const created = await table.create('p', 'r', { text: 'a', count: 3, ratio: 0.5, flag: true });
    expect(created.etag).not.toBe('');
    const read = await table.get('p', 'r');
    expect(read?.props).toEqual({ text: 'a', count: 3, ratio: 0.5, flag: true });
    expect(read?.etag).toBe(created.etag);
  });

  it('refuses to create a row twice', async () => {
    const table = make();
    await table.create('p', 'r', { v: 1 });
    await expect(table.create('p', 'r', { v: 2 })).rejects.toBeInstanceOf(EntityExistsError);
    expect((await table.get('p', 'r'))?.props).toEqual({ v: 1 });
  });

  it('updates only at the current etag', async () => {
    const table = make();
    const first = await table.create('p', 'r', { v: 1 });
    const second = await table.update('p', 'r', { v: 2 }, first.etag);
    expect(second.etag).not.toBe(first.etag);
    await expect(table.update('p', 'r', { v: 3 }, first.etag)).rejects.toBeInstanceOf(EtagMismatchError);
    await expect(table.update('p', 'gone', { v: 3 }, first.etag)).rejects.toBeInstanceOf(EntityNotFoundError);
    expect((await table.get('p', 'r'))?.props).toEqual({ v: 2 });
  });

  it('upserts by replacing every property', async () => {
    const table = make();
    await table.upsert('p', 'r', { a: 1, b: 2 });
    await table.upsert('p', 'r', { a: 3 });
    expect((await table.get('p', 'r'))?.props).toEqual({ a: 3 });
  });

  it('deletes idempotently, and only at the current etag when one is given', async () => {
    const table = make();
    const row = await table.create('p', 'r', { v: 1 });
    await table.update('p', 'r', { v: 2 }, row.etag);
    await expect(table.delete('p', 'r', row.etag)).rejects.toBeInstanceOf(EtagMismatchError);
    expect(await table.delete('p', 'r')).toBe(true);
    expect(await table.delete('p', 'r')).toBe(false);
  });

  it('lists one partition by row-key prefix or range, in key order, with only the selected properties', async () => {
    const table = make();
    for (const key of ['b|2', 'b|1', 'a|1', 'b}', 'bb|1', 'c']) await table.upsert('p', key, { key, n: 1 });
    await table.upsert('other', 'b|3', { key: 'b|3' });
    const keys = (rows: StoredEntity[]) => rows.map((row) => row.rowKey);
    expect(keys(await table.list('p', { prefix: 'b|' }))).toEqual(['b|1', 'b|2']);
    // Row keys compare by character code: 'b' < '|' < '}', so "bb|1" sorts before "b|1".
    expect(keys(await table.list('p', { prefix: 'b' }))).toEqual(['bb|1', 'b|1', 'b|2', 'b}']);
    expect(keys(await table.list('p', { range: { from: 'b|2', to: 'c' } }))).toEqual(['b|2', 'b}']);
    expect(keys(await table.list('p', { range: { from: 'c', to: 'c' } }))).toEqual([]);
    expect(keys(await table.list('p'))).toEqual(['a|1', 'bb|1', 'b|1', 'b|2', 'b}', 'c']);
    expect(await table.list('empty')).toEqual([]);

    const selected = await table.list('p', { prefix: 'b|', select: ['key', 'missing'] });
    expect(selected.map((row) => [row.partitionKey, row.rowKey, row.props])).toEqual([
      ['p', 'b|1', { key: 'b|1' }],
      ['p', 'b|2', { key: 'b|2' }],
    ]);
    expect(selected.every((row) => row.etag !== '')).toBe(true);
  });

  it('keeps stored state apart from the objects a caller passed in or read', async () => {
    const table = make();
    const props: Record<string, string> = { text: 'a' };
    await table.create('p', 'r', props);
    props.text = 'changed after create';
    const read = await table.get('p', 'r');
    // A read copy may be frozen (memory) or a fresh object (Azure); either way the stored row is unchanged.
    if (read) Reflect.set(read.props, 'text', 'changed after read');
    expect((await table.get('p', 'r'))?.props).toEqual({ text: 'a' });
  });

  it('applies a transaction entirely or not at all', async () => {
    const table = make();
    await table.create('p', 'marker', { v: 1 });
    const failed = await conflict(
      table.transact('p', [
        { kind: 'upsert', rowKey: 'state', props: { v: 2 } },
        { kind: 'create', rowKey: 'marker', props: { v: 2 } },
      ]),
    );
    expect(failed).toMatchObject({ reason: 'exists', actionIndex: 1, table: table.name });
    expect(await table.get('p', 'state')).toBeUndefined();

    const marker = await table.get('p', 'marker');
    await table.transact('p', [
      { kind: 'upsert', rowKey: 'state', props: { v: 2 } },
      { kind: 'update', rowKey: 'marker', props: { v: 3 }, etag: marker?.etag ?? '' },
      { kind: 'create', rowKey: 'new', props: { v: 1 } },
    ]);
    expect((await table.get('p', 'state'))?.props).toEqual({ v: 2 });
    expect((await table.get('p', 'marker'))?.props).toEqual({ v: 3 });

    const stale = await conflict(
      table.transact('p', [
        { kind: 'upsert', rowKey: 'state', props: { v: 9 } },
        { kind: 'update', rowKey: 'marker', props: { v: 4 }, etag: marker?.etag ?? '' },
      ]),
    );
    expect(stale).toMatchObject({ reason: 'etag_mismatch', actionIndex: 1 });
    const absent = await conflict(
      table.transact('p', [
        { kind: 'upsert', rowKey: 'state', props: { v: 9 } },
        { kind: 'delete', rowKey: 'never' },
      ]),
    );
    expect(absent).toMatchObject({ reason: 'not_found', actionIndex: 1 });
    expect((await table.get('p', 'state'))?.props).toEqual({ v: 2 });
  });

  it('returns the new etag of every written row, which a following conditional write accepts', async () => {
    const table = make();
    const old = await table.create('p', 'updated', { v: 1 });
    await table.create('p', 'deleted', { v: 1 });
    const { etags } = await table.transact('p', [
      { kind: 'create', rowKey: 'created', props: { v: 1 } },
      { kind: 'upsert', rowKey: 'upserted', props: { v: 1 } },
      { kind: 'update', rowKey: 'updated', props: { v: 2 }, etag: old.etag },
      { kind: 'delete', rowKey: 'deleted' },
    ]);
    expect([...etags.keys()].sort()).toEqual(['created', 'updated', 'upserted']);
    for (const [rowKey, etag] of etags) {
      expect((await table.get('p', rowKey))?.etag).toBe(etag);
    }
    const next = await table.transact('p', [
      { kind: 'update', rowKey: 'created', props: { v: 2 }, etag: etags.get('created') ?? '' },
      { kind: 'update', rowKey: 'upserted', props: { v: 2 }, etag: etags.get('upserted') ?? '' },
    ]);
    await table.update('p', 'updated', { v: 3 }, etags.get('updated') ?? '');
    await table.update('p', 'created', { v: 3 }, next.etags.get('created') ?? '');
    expect((await table.get('p', 'created'))?.props).toEqual({ v: 3 });
  });

  it('performs a single-action transaction of each kind with the same outcomes as a batch', async () => {
    const table = make();
    expect((await table.transact('p', [])).etags.size).toBe(0);

    const created = await table.transact('p', [{ kind: 'create', rowKey: 'r', props: { v: 1 } }]);
    const etag = created.etags.get('r') ?? '';
    expect(etag).toBe((await table.get('p', 'r'))?.etag);
    expect(
      await conflict(table.transact('p', [{ kind: 'create', rowKey: 'r', props: { v: 2 } }])),
    ).toMatchObject({
      reason: 'exists',
      actionIndex: 0,
    });

    const updated = await table.transact('p', [{ kind: 'update', rowKey: 'r', props: { v: 2 }, etag }]);
    expect(updated.etags.get('r')).toBe((await table.get('p', 'r'))?.etag);
    expect(
      await conflict(table.transact('p', [{ kind: 'update', rowKey: 'r', props: { v: 3 }, etag }])),
    ).toMatchObject({ reason: 'etag_mismatch', actionIndex: 0 });
    expect(
      await conflict(table.transact('p', [{ kind: 'update', rowKey: 'gone', props: { v: 3 }, etag }])),
    ).toMatchObject({ reason: 'not_found', actionIndex: 0 });

    const upserted = await table.transact('p', [{ kind: 'upsert', rowKey: 'u', props: { v: 1 } }]);
    await table.update('p', 'u', { v: 2 }, upserted.etags.get('u') ?? '');

    expect((await table.transact('p', [{ kind: 'delete', rowKey: 'r' }])).etags.size).toBe(0);
    expect(await table.get('p', 'r')).toBeUndefined();
    expect(await conflict(table.transact('p', [{ kind: 'delete', rowKey: 'r' }]))).toMatchObject({
      reason: 'not_found',
      actionIndex: 0,
    });
  });

  describe('refuses what Table Storage refuses', () => {
    it('keys with a forbidden character', async () => {
      const table = make();
      for (const key of ['a/b', 'a#b']) {
        expect(await refusal(table.create('p', key, { v: 1 }))).toMatchObject({
          limit: 'key_invalid',
          table: table.name,
        });
        expect(await refusal(table.create(key, 'r', { v: 1 }))).toMatchObject({ limit: 'key_invalid' });
        expect(
          await refusal(
            table.transact('p', [
              { kind: 'upsert', rowKey: 'ok', props: {} },
              { kind: 'create', rowKey: key, props: {} },
            ]),
          ),
        ).toMatchObject({ limit: 'key_invalid', actionIndex: 1 });
        expect(
          await refusal(
            table.transact('p', [
              { kind: 'upsert', rowKey: 'ok', props: {} },
              { kind: 'upsert', rowKey: key, props: {} },
            ]),
          ),
        ).toMatchObject({ limit: 'key_invalid', actionIndex: 1 });
      }
      // "#" also when the key is in the URL (upsert, update); for "/" there see the memory-only cases below.
      expect(await refusal(table.upsert('p', 'a#b', { v: 1 }))).toMatchObject({ limit: 'key_invalid' });
      expect(await refusal(table.update('p', 'a#b', { v: 1 }, 'W/"1"'))).toMatchObject({
        limit: 'key_invalid',
      });
      expect(await table.list('p')).toEqual([]);
    });

    it(`keys longer than ${TABLE_LIMITS.keyLength} characters`, async () => {
      const table = make();
      const longest = 'k'.repeat(TABLE_LIMITS.keyLength);
      await table.upsert('p', longest, { v: 1 });
      expect(await refusal(table.upsert('p', `${longest}k`, { v: 1 }))).toMatchObject({
        limit: 'key_invalid',
      });
      expect((await table.list('p')).map((row) => row.rowKey)).toEqual([longest]);
    });

    it(`a string property of more than ${TABLE_LIMITS.stringLength} characters`, async () => {
      const table = make();
      const longest = 'x'.repeat(TABLE_LIMITS.stringLength);
      await table.create('p', 'max', { text: longest });
      expect((await table.get('p', 'max'))?.props.text).toHaveLength(TABLE_LIMITS.stringLength);
      expect(await refusal(table.create('p', 'over', { text: `${longest}x` }))).toMatchObject({
        limit: 'property_too_large',
      });
      expect(await refusal(table.upsert('p', 'over', { text: `${longest}x` }))).toMatchObject({
        limit: 'property_too_large',
      });
      expect(
        await refusal(
          table.transact('p', [
            { kind: 'upsert', rowKey: 'ok', props: {} },
            { kind: 'upsert', rowKey: 'over', props: { text: `${longest}x` } },
          ]),
        ),
      ).toMatchObject({ limit: 'property_too_large', actionIndex: 1 });
      expect((await table.list('p')).map((row) => row.rowKey)).toEqual(['max']);
    });

    it('an entity clearly over 1 MiB', async () => {
      const table = make();
      await table.upsert('p', 'under', UNDER_ONE_MIB);
      const under = await table.get('p', 'under');
      expect(Object.keys(under?.props ?? {})).toHaveLength(15);
      expect(await refusal(table.upsert('p', 'over', OVER_ONE_MIB))).toMatchObject({
        limit: 'entity_too_large',
      });
      expect(await refusal(table.update('p', 'under', OVER_ONE_MIB, under?.etag ?? ''))).toMatchObject({
        limit: 'entity_too_large',
      });
      expect(
        await refusal(
          table.transact('p', [
            { kind: 'upsert', rowKey: 'ok', props: {} },
            { kind: 'upsert', rowKey: 'over', props: OVER_ONE_MIB },
          ]),
        ),
      ).toMatchObject({ limit: 'entity_too_large', actionIndex: 1 });
      expect((await table.list('p', { select: [] })).map((row) => row.rowKey)).toEqual(['under']);
    });

    it(`a transaction of more than ${TABLE_LIMITS.transactionActions} actions`, async () => {
      const table = make();
      const error = await refusal(table.transact('p', upserts(TABLE_LIMITS.transactionActions + 1)));
      expect(error.limit).toBe('transaction_too_large');
      expect(error.actionIndex).toBeUndefined();
      expect(await table.list('p')).toEqual([]);
      const { etags } = await table.transact('p', upserts(TABLE_LIMITS.transactionActions));
      expect(etags.size).toBe(TABLE_LIMITS.transactionActions);
    });

    it('a transaction over 4 MiB', async () => {
      const table = make();
      // ~10.8 MB by `entitySize`, ~5.4 MB of UTF-8 body: refused by both; each entity alone is accepted.
      const error = await refusal(
        table.transact(
          'p',
          upserts(12, () => UNDER_ONE_MIB),
        ),
      );
      expect(error.limit).toBe('transaction_too_large');
      expect(error.actionIndex).toBeUndefined();
      expect(await table.list('p', { select: [] })).toEqual([]);
      // ~3.6 MB by `entitySize`, ~1.8 MB of body: accepted by both.
      expect(
        (
          await table.transact(
            'p',
            upserts(4, () => UNDER_ONE_MIB),
          )
        ).etags.size,
      ).toBe(4);
    });

    it('the same row twice in one transaction', async () => {
      const table = make();
      const error = await refusal(
        table.transact('p', [
          { kind: 'upsert', rowKey: 'a', props: { v: 1 } },
          { kind: 'upsert', rowKey: 'b', props: { v: 1 } },
          { kind: 'update', rowKey: 'a', props: { v: 2 }, etag: 'W/"1"' },
        ]),
      );
      expect(error).toMatchObject({ limit: 'duplicate_row_in_transaction', actionIndex: 2 });
      expect(await table.list('p')).toEqual([]);
    });

    // The Azure adapter refuses these itself: the SDK would send a non-finite number as JSON null (the
    // property silently vanishes) and maps these names onto the keys and system fields.
    it('non-finite numbers and property names reserved for keys and metadata', async () => {
      const table = make();
      for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
        expect(await refusal(table.upsert('p', 'r', { value }))).toMatchObject({ limit: 'invalid_input' });
      }
      for (const name of ['rowKey', 'partitionKey', 'etag', 'timestamp', 'RowKey', 'odata.etag']) {
        expect(await refusal(table.create('p', 'r', { [name]: 'x' }))).toMatchObject({
          limit: 'invalid_input',
        });
      }
      expect(
        await refusal(
          table.transact('p', [
            { kind: 'upsert', rowKey: 'a', props: { v: 1 } },
            { kind: 'upsert', rowKey: 'b', props: { v: Number.NaN } },
          ]),
        ),
      ).toMatchObject({ limit: 'invalid_input', actionIndex: 1 });
      expect(await table.list('p')).toEqual([]);
    });

    it('a refused transaction changes nothing', async () => {
      const table = make();
      const kept = await table.create('p', 'kept', { v: 1 });
      await table.create('p', 'doomed', { v: 1 });
      const error = await refusal(
        table.transact('p', [
          { kind: 'update', rowKey: 'kept', props: { v: 2 }, etag: kept.etag },
          { kind: 'delete', rowKey: 'doomed' },
          { kind: 'create', rowKey: 'fresh', props: { v: 1 } },
          { kind: 'upsert', rowKey: 'too/long', props: { v: 1 } },
        ]),
      );
      expect(error).toMatchObject({ limit: 'key_invalid', actionIndex: 3 });
      expect((await table.list('p')).map((row) => [row.rowKey, row.props, row.etag])).toEqual([
        ['doomed', { v: 1 }, expect.any(String)],
        ['kept', { v: 1 }, kept.etag],
      ]);
    });
  });

  describe('lists one bounded page at a time', () => {
    const keys = (rows: readonly StoredEntity[]) => rows.map((row) => row.rowKey);
    /** Every page of a query: Table Storage may end a page early, so only the union and the bound are fixed. */
    const allPages = async (table: EntityTable, pk: string, options: ListPageOptions) => {
      const pages: string[][] = [];
      let cursor: string | undefined;
      do {
        const page = await table.listPage(pk, cursor === undefined ? options : { ...options, cursor });
        expect(page.rows.length).toBeLessThanOrEqual(options.top);
        pages.push(keys(page.rows));
        cursor = page.nextCursor;
      } while (cursor !== undefined && pages.length < 100);
      return pages;
    };
    const seed = async (table: EntityTable) => {
      await table.transact(
        'p',
        ['a', 'l|05', 'l|01', 'l|03', 'l|02', 'l|04', 'm'].map((rowKey) => ({
          kind: 'upsert',
          rowKey,
          props: { key: rowKey, n: 1 },
        })),
      );
      await table.upsert('other', 'l|00', { n: 1 });
    };

    it('by prefix, in key order, at most `top` rows a page, every row once', async () => {
      const table = make();
      await seed(table);
      const pages = await allPages(table, 'p', { prefix: 'l|', top: 2 });
      expect(pages.flat()).toEqual(['l|01', 'l|02', 'l|03', 'l|04', 'l|05']);
      const first = await table.listPage('p', { prefix: 'l|', top: 2 });
      expect(keys(first.rows)).toEqual(['l|01', 'l|02']);
      expect(first.nextCursor).toBeTypeOf('string');
      const whole = await table.listPage('p', { top: 1000 });
      expect(keys(whole.rows)).toEqual(['a', 'l|01', 'l|02', 'l|03', 'l|04', 'l|05', 'm']);
      expect(whole.nextCursor).toBeUndefined();
    });

    it('after a key (exclusive), within the range, with only the selected properties', async () => {
      const table = make();
      await seed(table);
      const page = await table.listPage('p', {
        range: { from: 'l|', to: 'l|05' },
        after: 'l|02',
        top: 10,
        select: ['n'],
      });
      expect(page.rows.map((row) => [row.partitionKey, row.rowKey, row.props])).toEqual([
        ['p', 'l|03', { n: 1 }],
        ['p', 'l|04', { n: 1 }],
      ]);
      expect(page.nextCursor).toBeUndefined();
      expect(keys((await table.listPage('p', { prefix: 'l|', after: 'l|05', top: 5 })).rows)).toEqual([]);
      expect(keys((await table.listPage('p', { prefix: 'l|', after: 'a', top: 1 })).rows)).toEqual(['l|01']);
    });

    it('of an empty partition or range: no rows and no cursor', async () => {
      const table = make();
      await seed(table);
      expect(await table.listPage('empty', { top: 5 })).toEqual({ rows: [], nextCursor: undefined });
      const none = await table.listPage('p', { prefix: 'x|', top: 5 });
      expect(none.rows).toEqual([]);
      expect(none.nextCursor).toBeUndefined();
    });

    it.each([0, -1, 1.5, TABLE_LIMITS.pageRows + 1])('refuses a top of %s', async (top) => {
      const error = await refusal(make().listPage('p', { top }));
      expect(error.limit).toBe('invalid_input');
    });

    it('refuses a cursor it did not return', async () => {
      const table = make();
      await seed(table);
      for (const cursor of ['forged', Buffer.from('{"x":1}').toString('base64')]) {
        const error = await refusal(table.listPage('p', { top: 2, cursor }));
        expect(error.limit).toBe('invalid_input');
      }
    });
  });

  describe('scans across partitions', () => {
    const seed = async (table: EntityTable) => {
      for (const pk of ['acct|2', 'acct|10', 'acct|1', 'other']) {
        await table.transact(
          pk,
          ['b', 'a', 'item|2', 'item|1', 'zz'].map((rowKey) => ({
            kind: 'upsert',
            rowKey,
            props: { pk, n: 1 },
          })),
        );
      }
    };
    const scan = (table: EntityTable, options: ScanOptions) => collect(table.scan(options));

    it('by partition prefix, ordered by partition then row key', async () => {
      const table = make();
      await seed(table);
      expect(await scan(table, { partitionPrefix: 'acct|1' })).toEqual([
        'acct|1/a',
        'acct|1/b',
        'acct|1/item|1',
        'acct|1/item|2',
        'acct|1/zz',
        'acct|10/a',
        'acct|10/b',
        'acct|10/item|1',
        'acct|10/item|2',
        'acct|10/zz',
      ]);
      expect(await scan(table, {})).toHaveLength(20);
      expect(await scan(table, { partitionPrefix: 'none' })).toEqual([]);
    });

    it('by row keys and row-key ranges', async () => {
      const table = make();
      await seed(table);
      expect(
        await scan(table, { partitionPrefix: 'acct|', rowKeys: ['a', { from: 'item|', to: 'item}' }] }),
      ).toEqual([
        'acct|1/a',
        'acct|1/item|1',
        'acct|1/item|2',
        'acct|10/a',
        'acct|10/item|1',
        'acct|10/item|2',
        'acct|2/a',
        'acct|2/item|1',
        'acct|2/item|2',
      ]);
      expect(await scan(table, { rowKeys: ['zz', 'missing'] })).toEqual([
        'acct|1/zz',
        'acct|10/zz',
        'acct|2/zz',
        'other/zz',
      ]);
      expect(await scan(table, { rowKeys: [] })).toEqual([]);
    });

    it('by more row keys than one service filter may compare, exactly', async () => {
      const table = make();
      await seed(table);
      const wanted = ['b', 'item|1', ...Array.from({ length: 20 }, (_, i) => `absent${i}`)];
      expect(await scan(table, { partitionPrefix: 'acct|2', rowKeys: wanted })).toEqual([
        'acct|2/b',
        'acct|2/item|1',
      ]);
      expect(
        await scan(table, {
          partitionPrefix: 'other',
          rowKeys: [...wanted, { from: 'y', to: 'zz' }, { from: 'zz', to: 'zz\u0000' }],
        }),
      ).toEqual(['other/b', 'other/item|1', 'other/zz']);
    });

    it('resumed after a partition, with or without a prefix and row keys', async () => {
      const table = make();
      await seed(table);
      // Exclusive: the partition named is the one a job finished, so it is not read again.
      expect(await scan(table, { rowKeys: ['zz'], partitionsAfter: 'acct|10' })).toEqual([
        'acct|2/zz',
        'other/zz',
      ]);
      expect(
        await scan(table, { partitionPrefix: 'acct|', partitionsAfter: 'acct|1', rowKeys: ['a'] }),
      ).toEqual(['acct|10/a', 'acct|2/a']);
      // A key between partitions (the partition may have been deleted since) resumes at the next one.
      expect(await scan(table, { rowKeys: ['a'], partitionsAfter: 'acct|11' })).toEqual([
        'acct|2/a',
        'other/a',
      ]);
      expect(await scan(table, { partitionsAfter: 'other' })).toEqual([]);
      // With more row keys than one filter may compare, the bound still holds.
      const wanted = ['b', ...Array.from({ length: 20 }, (_, i) => `absent${i}`)];
      expect(await scan(table, { partitionsAfter: 'acct|2', rowKeys: wanted })).toEqual(['other/b']);
    });

    it('with only the selected properties', async () => {
      const table = make();
      await seed(table);
      const rows: StoredEntity[] = [];
      for await (const row of table.scan({ partitionPrefix: 'other', rowKeys: ['a'], select: ['pk'] })) {
        rows.push(row);
      }
      expect(rows.map((row) => [row.partitionKey, row.rowKey, row.props])).toEqual([
        ['other', 'a', { pk: 'other' }],
      ]);
      expect(rows[0]?.etag).not.toBe('');
    });
  });
});

/**
 * Table Storage refuses these, and so does the memory twin; Azurite 3.35 does not (see its
 * `dist/src/table/handlers/TableHandler.js`), so they are held against the twin alone rather than faked.
 */
describe('EntityTable short pages (memory twin, as Table Storage may answer)', () => {
  it('answers fewer rows than asked with a cursor, and the pages still cover every row once', async () => {
    const table = createMemoryTable('short', { pageRows: 2 });
    await table.transact(
      'p',
      ['r1', 'r2', 'r3', 'r4', 'r5'].map((rowKey) => ({ kind: 'upsert', rowKey, props: {} })),
    );
    const first = await table.listPage('p', { top: 10 });
    expect(first.rows.map((row) => row.rowKey)).toEqual(['r1', 'r2']);
    const second = await table.listPage('p', {
      top: 10,
      ...(first.nextCursor ? { cursor: first.nextCursor } : {}),
    });
    expect(second.rows.map((row) => row.rowKey)).toEqual(['r3', 'r4']);
    // A cursor is bound to its partition.
    await expect(
      table.listPage('q', { top: 10, ...(first.nextCursor ? { cursor: first.nextCursor } : {}) }),
    ).rejects.toBeInstanceOf(StoreRejectedError);
  });
});

describe('EntityTable limits Azurite does not enforce (memory twin only)', () => {
  it('more than 252 custom properties: Azurite has no property-count check', async () => {
    const table = createMemoryTable();
    const props = (count: number) =>
      Object.fromEntries(Array.from({ length: count }, (_, i) => [`p${i}`, i]));
    await table.upsert('p', 'max', props(TABLE_LIMITS.properties));
    expect(await refusal(table.upsert('p', 'over', props(TABLE_LIMITS.properties + 1)))).toMatchObject({
      limit: 'too_many_properties',
    });
  });

  it('creating an entity over 1 MiB: Azurite checks inserts only against the 4 MB request limit', async () => {
    const table = createMemoryTable();
    expect(await refusal(table.create('p', 'over', OVER_ONE_MIB))).toMatchObject({
      limit: 'entity_too_large',
    });
    expect(
      await refusal(
        table.transact('p', [
          { kind: 'upsert', rowKey: 'ok', props: {} },
          { kind: 'create', rowKey: 'over', props: OVER_ONE_MIB },
        ]),
      ),
    ).toMatchObject({ limit: 'entity_too_large', actionIndex: 1 });
  });

  it('an entity over 1 MiB in UTF-16 but under 1 MB in UTF-8: Azurite measures the UTF-8 body', async () => {
    const table = createMemoryTable();
    // 20 strings of 30,000 ASCII characters: ~1.2 MB as Table Storage counts, ~0.6 MB of UTF-8.
    expect(await refusal(table.upsert('p', 'over', strings(20, 30_000)))).toMatchObject({
      limit: 'entity_too_large',
    });
  });

  it('a forbidden key character in a key addressed by URL: Azurite answers 500 for "/" and 404 to deletes', async () => {
    const table = createMemoryTable();
    expect(await refusal(table.upsert('p', 'a/b', { v: 1 }))).toMatchObject({ limit: 'key_invalid' });
    expect(await refusal(table.update('p', 'a/b', { v: 1 }, 'W/"1"'))).toMatchObject({
      limit: 'key_invalid',
    });
    expect(await refusal(table.delete('p', 'a#b'))).toMatchObject({ limit: 'key_invalid' });
    expect(
      await refusal(
        table.transact('p', [
          { kind: 'upsert', rowKey: 'ok', props: {} },
          { kind: 'delete', rowKey: 'a#b' },
        ]),
      ),
    ).toMatchObject({ limit: 'key_invalid', actionIndex: 1 });
  });
});

describe('Azure table adapter failures', () => {
  it('reports an unreachable service as an error, never as "not found"', async () => {
    const port = await freePort();
    const table = createAzureTable(
      {
        kind: 'connectionString',
        connectionString: inject('azuriteConnection').replace(
          /TableEndpoint=http:\/\/127\.0\.0\.1:\d+/,
          `TableEndpoint=http://127.0.0.1:${port}`,
        ),
      },
      'unreachable',
      { maxRetries: 0 },
    );
    for (const call of [
      () => table.get('p', 'r'),
      () => table.delete('p', 'r'),
      () => table.transact('p', [{ kind: 'delete', rowKey: 'r' }]),
      () => table.list('p'),
    ]) {
      const error = await rejection(call());
      expect(error).toBeInstanceOf(StoreError);
      expect(error).not.toBeInstanceOf(EntityNotFoundError);
      expect(error).toMatchObject({ code: 'store_unavailable', table: 'unreachable' });
      expect(error instanceof StoreError && error.cause).toBeTruthy();
    }
  });

  it('wraps service errors in StoreError with the table name and the cause', async () => {
    const table = azurite(0);
    // Azurite answers a "/" in a URL-addressed key with a bare 500 (Table Storage forbids "/" in keys): a
    // service failure that must surface as a StoreError naming the table, whatever its status.
    const error = await rejection(table.upsert('p', 'bad/key', { v: 1 }));
    expect(error).toBeInstanceOf(StoreError);
    expect(error).toMatchObject({ table: table.name });
    expect(error instanceof StoreError && error.cause).toBeTruthy();
  });

  it('treats a table deleted behind its back as unavailable, not as a missing row, and creates it again', async () => {
    const table = azurite(0);
    await table.upsert('p', 'r', { v: 1 });
    await TableClient.fromConnectionString(inject('azuriteConnection'), table.name, {
      allowInsecureConnection: true,
    }).deleteTable();
    const error = await rejection(table.get('p', 'r'));
    expect(error).toMatchObject({ code: 'store_unavailable', table: table.name });
    expect(await table.get('p', 'r')).toBeUndefined();
    await table.upsert('p', 'r', { v: 2 });
    expect((await table.get('p', 'r'))?.props).toEqual({ v: 2 });
  });
});
