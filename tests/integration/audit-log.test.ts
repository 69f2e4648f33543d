import { randomBytes } from 'node:crypto';
import { describe, expect, inject, it } from 'vitest';
import { createAzureTable } from '../../src/adapters/tables/azure-table.js';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { type AuditEntry, auditAction } from '../../src/billing/audit/entry.js';
import { decodeAuditId, encodeAuditId, InvalidAuditIdError } from '../../src/billing/audit/ids.js';
import {
  AUDIT_DAYS_PARTITION,
  auditIndexPartition,
  indexRowKey,
  PENDING_GRACE_MS,
  withAuditIndex,
} from '../../src/billing/audit/index-writer.js';
import { type AuditPage, type AuditQuery, createAuditLog } from '../../src/billing/audit/query.js';
import { type EntityTable, StoreError } from '../../src/billing/store.js';
import { manualClock } from '../support/memory.js';

/**
 * The audit log's storage: owner trails and the cross-owner day index on the in-memory table and on
 * Azurite, including every crash point of the index around a change's transaction.
 */

const implementations: Array<[string, () => EntityTable]> = [
  ['memory', () => createMemoryTable('billing')],
  [
    'azurite',
    () =>
      createAzureTable(
        { kind: 'connectionString', connectionString: inject('azuriteConnection') },
        `t${randomBytes(6).toString('hex')}audit`,
      ),
  ],
];

const T0 = Date.parse('2026-12-01T10:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

function entry(at: string, over: Partial<AuditEntry> = {}): AuditEntry {
  return {
    at,
    kind: 'seat_cap_changed',
    actor: { kind: 'user', id: 'alice' },
    cause: { kind: 'action', id: `req-${at}`, type: 'seats.cap' },
    before: { maxSeats: null },
    after: { maxSeats: 5 },
    ...over,
  };
}

/** Every page of a listing, following its cursors. */
async function all(list: (cursor: string | undefined) => Promise<AuditPage>): Promise<AuditPage['items']> {
  const items: AuditPage['items'] = [];
  let cursor: string | undefined;
  for (let pages = 0; pages < 100; pages++) {
    const page = await list(cursor);
    items.push(...page.items);
    if (page.nextCursor === null) return items;
    cursor = page.nextCursor;
  }
  throw new Error('more than 100 pages');
}

describe.each(implementations)('audit log on %s', (_name, makeTable) => {
  function setup() {
    const raw = makeTable();
    const clock = manualClock(iso(T0));
    const table = withAuditIndex(raw, { clock });
    const log = createAuditLog({ table: raw, clock, log: () => undefined });
    /**
     * Writes `count` changes for `owner` through the real write path (`auditAction` in transactions of up
     * to 100 rows, through the index writer), one every `stepMinutes` back from `start`.
     */
    const seed = async (
      owner: string,
      start: number,
      count: number,
      shape: (i: number) => Partial<AuditEntry> = () => ({}),
      stepMinutes = 1,
    ) => {
      for (let from = 0; from < count; from += 100) {
        const actions = [];
        for (let i = from; i < Math.min(count, from + 100); i++) {
          actions.push(auditAction(entry(iso(start - i * stepMinutes * 60_000), shape(i)), `${owner}-${i}`));
        }
        await table.transact(owner, actions);
      }
    };
    return { raw, clock, table, log, seed };
  }
  const query = (over: Partial<AuditQuery> = {}): AuditQuery => ({ limit: 50, ...over });

  it("lists an owner's trail newest first, page by page, filtered by cause, actor and time", async () => {
    const { log, seed } = setup();
    await seed('alice', T0, 250, (i) =>
      i % 5 === 0
        ? { actor: { kind: 'stripe', id: 'stripe' }, cause: { kind: 'event', id: `evt_${i}`, type: 'x' } }
        : {},
    );
    const items = await all((cursor) => log.listOwner('alice', query({ limit: 100, cursor })));
    expect(items).toHaveLength(250);
    const times = items.map((item) => Date.parse(item.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(items[0]).toMatchObject({ ownerId: 'alice', kind: 'seat_cap_changed', after: { maxSeats: 5 } });

    const events = await all((cursor) => log.listOwner('alice', query({ cause: 'event', cursor })));
    expect(events).toHaveLength(50);
    expect(events.every((item) => item.actor.kind === 'stripe')).toBe(true);
    expect(
      await all((cursor) => log.listOwner('alice', query({ actor: 'user:alice', cursor }))),
    ).toHaveLength(200);
    expect(await all((cursor) => log.listOwner('alice', query({ actor: 'alice', cursor })))).toHaveLength(
      200,
    );

    // [T0 - 20 min, T0 - 10 min): ten rows, the window's own ends included and excluded exactly.
    const window = await log.listOwner(
      'alice',
      query({ from: new Date(T0 - 20 * 60_000), to: new Date(T0 - 10 * 60_000) }),
    );
    expect(window.items.map((item) => item.at)).toEqual(
      Array.from({ length: 10 }, (_, i) => iso(T0 - (11 + i) * 60_000)),
    );
    expect(window.nextCursor).toBeNull();
  });

  it('lists every owner from the day index, newest first, across days, and by time window', async () => {
    const { log, seed } = setup();
    // Three owners, rows every five minutes over about two days (three day partitions).
    const none = () => ({});
    await seed('alice', T0, 600, none, 5);
    await seed('bob', T0 - 150_000, 600, none, 5);
    await seed('carol', T0 - 7 * 3_600_000, 150, none, 5);
    const items = await all((cursor) => log.listAll(query({ limit: 200, cursor })));
    expect(items).toHaveLength(1350);
    const times = items.map((item) => Date.parse(item.at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
    expect(new Set(items.map((item) => item.id)).size).toBe(1350);

    const from = new Date(T0 - 26 * 3_600_000);
    const to = new Date(T0 - 22 * 3_600_000);
    const windowed = await all((cursor) => log.listAll(query({ from, to, limit: 200, cursor })));
    expect(windowed).toHaveLength(2 * 48);
    expect(
      windowed.every((item) => Date.parse(item.at) >= from.getTime() && Date.parse(item.at) < to.getTime()),
    ).toBe(true);
  }, 120_000);

  it('reads rows written before the shared shape, after the newer ones, and reports a corrupt row by its key', async () => {
    const { raw, log, seed } = setup();
    await seed('dave', T0, 2);
    await raw.create('dave', 'audit|2026-11-20T09:00:00.000Z|evt_old', {
      at: '2026-11-20T09:00:00.000Z',
      kind: 'subscription_changed',
      causeKind: 'event',
      causeId: 'evt_old',
      causeType: 'customer.subscription.updated',
      actor: 'stripe',
      changed: 'status',
      before: '',
      after: JSON.stringify({ plan: 'pro', status: 'active' }),
    });
    await raw.create('dave', 'audit|2026-11-21T09:00:00.000Z|3f1b', {
      at: '2026-11-21T09:00:00.000Z',
      kind: 'seat_cap_changed',
      causeKind: 'action',
      causeType: 'seats.cap',
      actor: 'dave',
      before: '',
      after: '5',
    });
    await raw.upsert('dave', 'audit|duplicate|sub_2', {
      at: '2026-11-19T09:00:00.000Z',
      kind: 'duplicate_subscription',
      state: 'cancelled',
      causeKind: 'event',
      causeId: 'evt_dup',
      causeType: 'invoice.paid',
      actor: 'billing',
      subscriptionId: 'sub_2',
    });
    await raw.create('dave', 'audit|2026-11-22T09:00:00.000Z|broken', { kind: 'x', causeKind: 'bogus' });

    const page = await log.listOwner('dave', query());
    expect(page.items.map((item) => item.kind)).toEqual([
      'seat_cap_changed',
      'seat_cap_changed',
      'seat_cap_changed',
      'subscription_changed',
      'duplicate_subscription',
    ]);
    expect(page.items[2]).toMatchObject({
      legacy: true,
      actor: { kind: 'user', id: 'dave' },
      cause: { kind: 'action', id: '3f1b' },
      before: null,
      after: 5,
    });
    expect(page.items[3]).toMatchObject({
      actor: { kind: 'stripe' },
      cause: { kind: 'event', id: 'evt_old' },
      after: { plan: 'pro' },
      details: { changed: 'status' },
    });
    expect(page.items[4]).toMatchObject({ actor: { kind: 'stripe' }, details: { state: 'cancelled' } });
    expect(page.corrupt).toEqual([
      expect.objectContaining({ partitionKey: 'dave', rowKey: 'audit|2026-11-22T09:00:00.000Z|broken' }),
    ]);

    // One row a page: the legacy rows page too, and end.
    const paged = await all((cursor) => log.listOwner('dave', query({ limit: 1, cursor })));
    expect(paged.map((item) => item.id)).toEqual(page.items.map((item) => item.id));
  });

  describe('the index around a crash', () => {
    /** The inner table, failing the first call `fails` picks, before or after it took effect. */
    function crashing(
      inner: EntityTable,
      fails: (call: string, pk: string, props?: unknown) => 'before' | 'after' | undefined,
    ) {
      let crashed = false;
      const maybe = async <T>(call: string, pk: string, props: unknown, run: () => Promise<T>) => {
        const when = crashed ? undefined : fails(call, pk, props);
        if (when === 'before') {
          crashed = true;
          throw new StoreError('simulated crash before the call', inner.name);
        }
        const result = await run();
        if (when === 'after') {
          crashed = true;
          throw new StoreError('simulated crash after the call, its answer lost', inner.name);
        }
        return result;
      };
      return {
        ...inner,
        transact: (pk, actions) => maybe('transact', pk, actions, () => inner.transact(pk, actions)),
        upsert: (pk, rk, props) => maybe('upsert', pk, props, () => inner.upsert(pk, rk, props)),
      } satisfies EntityTable;
    }
    const indexRow = (raw: EntityTable, owner: string, rowKey: string) =>
      raw.get(auditIndexPartition('2026-12-01'), indexRowKey(owner, rowKey));

    it('a transaction that never landed leaves a pending index row that is never listed, and goes after the grace period', async () => {
      const { raw, clock, log } = setup();
      const table = withAuditIndex(
        crashing(raw, (call, pk) => (call === 'transact' && pk === 'erin' ? 'before' : undefined)),
        { clock },
      );
      const action = auditAction(entry(iso(T0)), 'req-1');
      await expect(table.transact('erin', [action])).rejects.toBeInstanceOf(StoreError);
      expect((await indexRow(raw, 'erin', action.rowKey))?.props.indexState).toBe('pending');
      expect((await log.listAll(query())).items).toEqual([]);
      expect(await indexRow(raw, 'erin', action.rowKey)).toBeDefined();
      clock.set(iso(T0 + PENDING_GRACE_MS + 1000));
      expect((await log.listAll(query())).items).toEqual([]);
      expect(await indexRow(raw, 'erin', action.rowKey)).toBeUndefined();
    });

    it.each([
      ['the process dies after the commit, before the index is confirmed', 'upsert-committed'],
      ["the commit's answer is lost", 'transact-after'],
    ] as const)('loses nothing when %s', async (_case, point) => {
      const { raw, clock, log } = setup();
      const table = withAuditIndex(
        crashing(raw, (call, pk, props) => {
          if (point === 'transact-after') return call === 'transact' && pk === 'frank' ? 'after' : undefined;
          const committed =
            typeof props === 'object' &&
            props !== null &&
            'indexState' in props &&
            props.indexState === 'committed';
          return call === 'upsert' && pk.startsWith('auditidx|2') && committed ? 'before' : undefined;
        }),
        { clock, warn: () => undefined },
      );
      const action = auditAction(entry(iso(T0)), 'req-2');
      if (point === 'transact-after')
        await expect(table.transact('frank', [action])).rejects.toThrow(/answer lost/);
      // A confirmation that fails is logged, not thrown: the change itself is made.
      else await table.transact('frank', [action]);
      expect(await raw.get('frank', action.rowKey)).toBeDefined();
      expect((await indexRow(raw, 'frank', action.rowKey))?.props.indexState).toBe('pending');

      const listed = await log.listAll(query());
      expect(listed.items.map((item) => item.id)).toEqual([encodeAuditId('frank', action.rowKey)]);
      // The reader settled it.
      expect((await indexRow(raw, 'frank', action.rowKey))?.props.indexState).toBe('committed');
      // Long after, still there.
      clock.set(iso(T0 + 10 * PENDING_GRACE_MS));
      expect((await log.listAll(query())).items).toHaveLength(1);
    });

    it('lists a day only once in the day directory, however many rows it holds', async () => {
      const { raw, seed } = setup();
      await seed('gina', T0, 5);
      expect(await raw.list(AUDIT_DAYS_PARTITION)).toHaveLength(1);
    });
  });

  it('refuses a cursor it did not make, or one of the other listing', async () => {
    const { log, seed } = setup();
    await seed('hank', T0, 3);
    const ownerPage = await log.listOwner('hank', query({ limit: 1 }));
    await expect(log.listAll(query({ cursor: ownerPage.nextCursor ?? '' }))).rejects.toMatchObject({
      code: 'invalid_cursor',
    });
    for (const cursor of ['x', 'not base64!', Buffer.from('{"s":"o","p":"z"}').toString('base64url')])
      await expect(log.listOwner('hank', query({ cursor }))).rejects.toMatchObject({
        code: 'invalid_cursor',
      });
  });
});

describe('audit ids', () => {
  it('round-trip the row they name, and refuse anything else', () => {
    const id = encodeAuditId('alice', 'audit|n|8235409999999|evt_1');
    expect(id).toMatch(/^a1[A-Za-z0-9_-]+$/);
    expect(decodeAuditId(id)).toEqual({ partitionKey: 'alice', rowKey: 'audit|n|8235409999999|evt_1' });
    expect(decodeAuditId(encodeAuditId('ops|global', 'audit|n|1|x')).partitionKey).toBe('ops|global');
    const bad = [
      '',
      'a1',
      'b1YWxpY2UKYXVkaXR8bnwx',
      `a1${Buffer.from('alice\nconsume|x').toString('base64url')}`,
      `a1${Buffer.from('retention|2026\naudit|n|1').toString('base64url')}`,
      `a1${Buffer.from('alice').toString('base64url')}`,
      `a1${Buffer.from('alice\naudit|n|1#x').toString('base64url')}`,
      `${id}=`,
      `a1${'A'.repeat(5000)}`,
    ];
    for (const text of bad) expect(() => decodeAuditId(text), text).toThrow(InvalidAuditIdError);
  });
});
