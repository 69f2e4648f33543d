import { describe, expect, it } from 'vitest';
import { createMemoryTable } from '../../src/adapters/tables/memory-table.js';
import type { EventRef } from '../../src/billing/event-ref.js';
import {
  createPoisonStore,
  POISON_PARTITION,
  PoisonCursorError,
  RAW_MAX_CHARS,
} from '../../src/billing/poison.js';
import type { EventQueue, QueueMessage } from '../../src/billing/queue.js';
import { manualClock } from '../support/memory.js';

const ref = (n: number): EventRef => ({
  v: 2,
  eventId: `evt_${String(n).padStart(3, '0')}`,
  type: 'customer.subscription.updated',
  objectId: 'sub_1',
  customerId: 'cus_1',
  attempt: 4,
});

function setup() {
  const table = createMemoryTable('billing');
  const clock = manualClock('2026-12-01T10:00:00.000Z');
  const sent: QueueMessage[] = [];
  let failSends = false;
  const queue: EventQueue = {
    name: 'q',
    async send(message) {
      if (failSends) throw new Error('queue down');
      sent.push(message);
    },
    ping: async () => undefined,
  };
  const store = createPoisonStore({ table, queue, clock });
  const poisonEvent = (n: number) =>
    store.record({
      ref: ref(n),
      reason: 'permanent',
      code: 'unknown_customer',
      message: 'who?',
      attempts: 1,
    });
  return { table, clock, sent, store, poisonEvent, failSends: (fail: boolean) => (failSends = fail) };
}

describe('poison store', () => {
  it('keeps one row per event, with its first and last failure', async () => {
    const { store, clock, poisonEvent } = setup();
    await poisonEvent(1);
    clock.set('2026-12-01T11:00:00.000Z');
    await poisonEvent(1);
    const { items } = await store.list({ limit: 10 });
    expect(items).toHaveLength(1);
    expect(items[0]).toMatchObject({
      firstFailedAt: '2026-12-01T10:00:00.000Z',
      lastFailedAt: '2026-12-01T11:00:00.000Z',
    });
  });

  it('truncates an unreadable message to a size the table takes', async () => {
    const { store } = setup();
    await store.record({
      raw: 'x'.repeat(100_000),
      reason: 'unreadable',
      code: 'event_invalid',
      message: 'no',
    });
    const [entry] = (await store.list({ limit: 10 })).items;
    expect(entry?.raw).toHaveLength(RAW_MAX_CHARS);
  });

  it('pages in event id order with an opaque cursor, and refuses a forged one', async () => {
    const { store, poisonEvent } = setup();
    for (const n of [3, 1, 5, 2, 4]) await poisonEvent(n);
    const first = await store.list({ limit: 2 });
    expect(first.items.map((i) => i.eventId)).toEqual(['evt_001', 'evt_002']);
    const second = await store.list({ limit: 2, cursor: first.nextCursor ?? '' });
    expect(second.items.map((i) => i.eventId)).toEqual(['evt_003', 'evt_004']);
    const last = await store.list({ limit: 2, cursor: second.nextCursor ?? '' });
    expect(last.items.map((i) => i.eventId)).toEqual(['evt_005']);
    expect(last.nextCursor).toBeNull();
    await expect(store.list({ limit: 2, cursor: 'not base64url!' })).rejects.toBeInstanceOf(
      PoisonCursorError,
    );
  });

  it('replays with attempt 0 under a fresh message id, and removes the row after the send', async () => {
    const { store, sent, poisonEvent } = setup();
    await poisonEvent(1);
    await poisonEvent(2);
    const report = await store.replay({ eventIds: ['evt_001', 'evt_404'] });
    expect(report).toEqual({ replayed: ['evt_001'], notFound: ['evt_404'], more: false });
    expect(sent).toHaveLength(1);
    expect(sent[0]?.id).toMatch(/^evt_001~replay~\d+$/);
    expect(sent[0]?.orderingKey).toBe('cus_1');
    expect(sent[0]?.body).toEqual({ ...ref(1), attempt: 0 });
    expect((await store.list({ limit: 10 })).items.map((i) => i.eventId)).toEqual(['evt_002']);
  });

  it('keeps the row when the send fails', async () => {
    const { store, poisonEvent, failSends } = setup();
    await poisonEvent(1);
    failSends(true);
    await expect(store.replay({ all: true })).rejects.toMatchObject({
      kind: 'unavailable',
      code: 'queue_unavailable',
      cause: new Error('queue down'),
    });
    expect((await store.list({ limit: 10 })).items).toHaveLength(1);
  });

  it('replays all in bounded calls and never the unreadable rows', async () => {
    const { store, sent, poisonEvent } = setup();
    for (let n = 1; n <= 101; n++) await poisonEvent(n);
    await store.record({ raw: '??', reason: 'unreadable', code: 'event_invalid', message: 'no' });
    const first = await store.replay({ all: true });
    expect(first.replayed).toHaveLength(100);
    expect(first.more).toBe(true);
    const second = await store.replay({ all: true });
    expect(second).toEqual({ replayed: ['evt_101'], notFound: [], more: false });
    expect(sent).toHaveLength(101);
    expect((await store.list({ limit: 10 })).items.map((i) => i.reason)).toEqual(['unreadable']);
  });

  it('keeps a row that was poisoned again while its replay was being sent', async () => {
    const { table, clock, sent } = setup();
    const queue: EventQueue = {
      name: 'q',
      async send(message) {
        sent.push(message);
        // The replayed event fails again before the replay removes the row.
        await store.record({
          ref: ref(1),
          reason: 'permanent',
          code: 'unknown_customer',
          message: 'again',
          attempts: 1,
        });
      },
      ping: async () => undefined,
    };
    const store = createPoisonStore({ table, queue, clock });
    await store.record({
      ref: ref(1),
      reason: 'permanent',
      code: 'unknown_customer',
      message: 'who?',
      attempts: 1,
    });
    await store.replay({ eventIds: ['evt_001'] });
    const row = await table.get(POISON_PARTITION, 'evt_001');
    expect(row?.props.message).toBe('again');
  });
});
