import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import { createCredits, LedgerCursorError, type LedgerEntry } from '../../src/billing/credits.js';
import { LEDGER_PREFIX, ledgerRowKey } from '../../src/billing/metering-rows.js';
import { BALANCE_ROW } from '../../src/billing/owner/keys.js';
import { createOwnerStore } from '../../src/billing/owner/snapshot.js';
import type { EntityTable, TransactionAction } from '../../src/billing/store.js';
import { manualClock } from '../support/memory.js';
import { countingTables } from '../support/tables.js';

const OWNER = 'alice';
const ROWS = 16_000;
const START = Date.parse('2026-01-01T00:00:00.000Z');

/** `count` ledger rows of `owner`, one a minute (entry `i` at START + i minutes), written directly. */
async function seedLedger(table: EntityTable, owner: string, count: number): Promise<void> {
  for (let from = 0; from < count; from += 100) {
    const actions: TransactionAction[] = [];
    for (let i = from; i < Math.min(count, from + 100); i++) {
      const at = new Date(START + i * 60_000);
      actions.push({
        kind: 'create',
        rowKey: ledgerRowKey(at, 0, 'draw', `run_${i}`),
        props: {
          kind: 'draw',
          credits: -1,
          balanceAfter: count - i,
          ref: `run_${i}`,
          description: 'd',
          at: at.toISOString(),
        },
      });
    }
    await table.transact(owner, actions);
  }
}

function setup(table: EntityTable = createMemoryTable('billing')) {
  const counted = countingTables({ billing: table });
  const clock = manualClock();
  const billing = counted.tables.billing;
  const credits = createCredits({
    table: billing,
    owners: createOwnerStore({ table: billing, clock }),
    clock,
  });
  return { credits, log: counted.log, table };
}

const refs = (entries: readonly LedgerEntry[]) => entries.map((entry) => entry.ref);

describe('credit ledger pages', () => {
  it(`reads one page of ${ROWS.toLocaleString('en')} rows with at most limit + 1 rows from storage, never the range`, async () => {
    const { credits, log, table } = setup();
    await seedLedger(table, OWNER, ROWS);
    await table.upsert(OWNER, BALANCE_ROW, { balance: 0, updatedAt: '2026-01-01T00:00:00.000Z' });

    const page = await credits.ledgerPage(OWNER, { limit: 100 });
    expect(page.entries).toHaveLength(100);
    expect(page.entries[0]?.ref).toBe(`run_${ROWS - 1}`); // newest first
    expect(page.nextCursor).toBeTypeOf('string');
    expect(log.count({ method: 'list' })).toBe(0);
    expect(log.rowsRead()).toBe(101);

    const first = await credits.ledger(OWNER);
    expect(first).toHaveLength(50); // the default page
  });

  it('pages through the whole ledger, every entry once, newest first, reading each row about once', async () => {
    const { credits, log, table } = setup();
    await seedLedger(table, OWNER, ROWS);
    log.reset();
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const page = await credits.ledgerPage(OWNER, { limit: 100, ...(cursor === null ? {} : { cursor }) });
      seen.push(...refs(page.entries));
      cursor = page.nextCursor;
      pages++;
    } while (cursor !== null);
    expect(pages).toBe(ROWS / 100);
    expect(seen).toEqual(Array.from({ length: ROWS }, (_, i) => `run_${ROWS - 1 - i}`));
    // One row beyond each page but the last.
    expect(log.rowsRead()).toBe(ROWS + pages - 1);
    expect(log.count({ method: 'list' })).toBe(0);
  });

  it('asks again when storage answers a page short, still reading at most limit + 1 rows', async () => {
    const { credits, log, table } = setup(createMemoryTable('billing', { pageRows: 7 }));
    await seedLedger(table, OWNER, 60);
    log.reset();
    const page = await credits.ledgerPage(OWNER, { limit: 20 });
    expect(refs(page.entries)).toEqual(Array.from({ length: 20 }, (_, i) => `run_${59 - i}`));
    expect(log.count({ method: 'listPage' })).toBe(3);
    expect(log.rowsRead()).toBe(21);
    const next = await credits.ledgerPage(OWNER, {
      limit: 40,
      ...(page.nextCursor ? { cursor: page.nextCursor } : {}),
    });
    expect(refs(next.entries)).toEqual(Array.from({ length: 40 }, (_, i) => `run_${39 - i}`));
    expect(next.nextCursor).toBeNull();
  });

  it('says the last page is the last: a ledger of exactly one page has no next cursor', async () => {
    const { credits, table } = setup();
    await seedLedger(table, OWNER, 10);
    expect((await credits.ledgerPage(OWNER, { limit: 10 })).nextCursor).toBeNull();
    expect(await credits.ledgerPage('nobody', {})).toEqual({ entries: [], nextCursor: null });
  });

  it('keeps a cursor inside the caller’s own ledger', async () => {
    const { credits, table } = setup();
    await seedLedger(table, OWNER, 30);
    await seedLedger(table, 'bob', 30);
    const alicePage = await credits.ledgerPage(OWNER, { limit: 10 });
    const cursor = alicePage.nextCursor ?? '';
    // Alice's cursor in Bob's request reads Bob's ledger after that key: Bob's own entries, nothing of Alice's.
    const bobs = await credits.ledgerPage('bob', { limit: 10, cursor });
    expect(bobs.entries).toHaveLength(10);
    expect((await table.list('bob', { prefix: LEDGER_PREFIX })).map((row) => row.props.ref)).toEqual(
      expect.arrayContaining(refs(bobs.entries)),
    );
  });

  it.each([
    ['not base64url', '!!!'],
    [
      'not canonical base64url',
      `${Buffer.from(`${LEDGER_PREFIX}0000000000000000|draw|x`).toString('base64url')}=`,
    ],
    ['another row of the partition', Buffer.from('s|o|bal').toString('base64url')],
    ['a key before the ledger', Buffer.from('credits|grant|cs_1').toString('base64url')],
    ['a ledger prefix without a key', Buffer.from(LEDGER_PREFIX).toString('base64url')],
    [
      'a forbidden key character',
      Buffer.from(`${LEDGER_PREFIX}0000000000000000|draw|a/b`).toString('base64url'),
    ],
  ])('refuses a forged cursor: %s', async (_name, cursor) => {
    const { credits, table, log } = setup();
    await seedLedger(table, OWNER, 5);
    log.reset();
    await expect(credits.ledgerPage(OWNER, { cursor })).rejects.toBeInstanceOf(LedgerCursorError);
    expect(log.count()).toBe(0);
  });
});
