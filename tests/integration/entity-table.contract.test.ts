import { describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import {
  EntityExistsError,
  EntityNotFoundError,
  type EntityTable,
  EtagMismatchError,
  mutate,
  StoreError,
  TransactionFailedError,
} from '../../src/billing/store.js';
import { freePort } from '../../src/local/azurite.js';
import { uniquePrefix } from '../support/harness.js';

/**
 * One contract, two implementations: the in-memory table that makes unit tests fast must behave like
 * Table Storage (here Azurite), or the unit tests prove nothing.
 */
const implementations: Array<[string, () => EntityTable]> = [
  ['memory', () => createMemoryTable()],
  [
    'azurite',
    () =>
      createAzureTable(
        { kind: 'connectionString', connectionString: inject('azuriteConnection') },
        `${uniquePrefix()}contract`,
      ),
  ],
];

describe.each(implementations)('EntityTable contract: %s', (_name, make) => {
  it('reads a missing row as undefined and a created row with its props and an etag', async () => {
    const table = make();
    expect(await table.get('p', 'missing')).toBeUndefined();
    const created = await table.create('p', 'r', { text: 'a', count: 3, flag: true });
    expect(created.etag).not.toBe('');
    const read = await table.get('p', 'r');
    expect(read?.props).toEqual({ text: 'a', count: 3, flag: true });
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

  it('lists and counts one partition by row-key prefix, in key order', async () => {
    const table = make();
    for (const key of ['b|2', 'b|1', 'a|1', 'b}', 'bb|1', 'c']) await table.upsert('p', key, { key });
    await table.upsert('other', 'b|3', { key: 'b|3' });
    expect((await table.list('p', { prefix: 'b|' })).map((r) => r.rowKey)).toEqual(['b|1', 'b|2']);
    expect(await table.count('p', 'b|')).toBe(2);
    expect(await table.count('p', 'b')).toBe(4);
    expect((await table.list('p')).length).toBe(6);
    expect(await table.count('empty', '')).toBe(0);
  });

  it('applies a transaction entirely or not at all', async () => {
    const table = make();
    await table.create('p', 'marker', { v: 1 });
    const error = await table
      .transact('p', [
        { kind: 'upsert', rowKey: 'state', props: { v: 2 } },
        { kind: 'create', rowKey: 'marker', props: { v: 2 } },
      ])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TransactionFailedError);
    expect((error as TransactionFailedError).reason).toBe('exists');
    expect((error as TransactionFailedError).actionIndex).toBe(1);
    expect(await table.get('p', 'state')).toBeUndefined();

    const marker = await table.get('p', 'marker');
    await table.transact('p', [
      { kind: 'upsert', rowKey: 'state', props: { v: 2 } },
      { kind: 'update', rowKey: 'marker', props: { v: 3 }, etag: marker?.etag ?? '' },
      { kind: 'create', rowKey: 'new', props: { v: 1 } },
    ]);
    expect((await table.get('p', 'state'))?.props).toEqual({ v: 2 });
    expect((await table.get('p', 'marker'))?.props).toEqual({ v: 3 });
    await expect(
      table.transact('p', [{ kind: 'update', rowKey: 'marker', props: { v: 4 }, etag: marker?.etag ?? '' }]),
    ).rejects.toMatchObject({ reason: 'etag_mismatch' });
    await table.transact('p', [{ kind: 'delete', rowKey: 'new' }]);
    expect(await table.get('p', 'new')).toBeUndefined();
  });

  it('loses no update when many writers race through mutate (etag retry)', async () => {
    const table = make();
    const writers = 12;
    await Promise.all(
      Array.from({ length: writers }, () =>
        mutate(table, 'p', 'counter', (current) => ({ put: { n: Number(current?.props.n ?? 0) + 1 } }), {
          attempts: 50,
        }),
      ),
    );
    expect((await table.get('p', 'counter'))?.props.n).toBe(writers);
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
    await expect(table.get('p', 'r')).rejects.toThrow();
    await expect(table.get('p', 'r')).rejects.not.toBeInstanceOf(EntityNotFoundError);
  });

  it('wraps service errors in StoreError with the table name', async () => {
    const table = createAzureTable(
      { kind: 'connectionString', connectionString: inject('azuriteConnection') },
      `${uniquePrefix()}errors`,
      { maxRetries: 0 },
    );
    // A row key with a character Table Storage forbids.
    await expect(table.upsert('p', 'bad/key', { v: 1 })).rejects.toBeInstanceOf(StoreError);
  });
});
