import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '../../src/billing/clock.js';
import { type ApiResponse, startTestHost, type TestHost, token } from '../support/harness.js';

/** A clock the test moves, so each grant has its own instant and the ledger a definite order. */
function movableClock(start: string): Clock & { set(iso: string): void } {
  let now = new Date(start);
  return { now: () => new Date(now), set: (iso) => (now = new Date(iso)) };
}

interface CreditsBody {
  readonly balance: number;
  readonly ledger: ReadonlyArray<{ readonly ref: string }> | null;
  readonly nextCursor: string | null;
}

describe('GET /api/billing/credits: the ledger in pages', () => {
  let host: TestHost;
  let owner: string;
  const clock = movableClock('2026-11-20T12:00:00.000Z');
  const GRANTS = 25;

  const credits = (query: string, as = owner) =>
    host.call('GET', `/api/billing/credits${query}`, { token: as });
  const bodyOf = (response: ApiResponse) => {
    expect(response.status, response.text).toBe(200);
    return response.body as CreditsBody;
  };

  beforeAll(async () => {
    host = await startTestHost({ clock, stripe: false, worker: false });
    owner = await token({ sub: 'u-ledger' });
    for (let i = 0; i < GRANTS; i++) {
      clock.set(new Date(Date.parse('2026-11-20T12:00:00.000Z') + i * 60_000).toISOString());
      await host.services.credits.grantCredits({
        ownerId: 'u-ledger',
        credits: 10,
        sourceId: `cs_ledger_${String(i).padStart(2, '0')}`,
        description: 'pack',
      });
    }
  });
  afterAll(async () => {
    await host?.close();
  });

  it('pages newest first with nextCursor until null, every entry once', async () => {
    const refs: string[] = [];
    const sizes: number[] = [];
    let cursor: string | null = null;
    do {
      const body: CreditsBody = bodyOf(
        await credits(`?limit=10${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`),
      );
      expect(body.balance).toBe(GRANTS * 10);
      sizes.push(body.ledger?.length ?? -1);
      refs.push(...(body.ledger ?? []).map((entry) => entry.ref));
      cursor = body.nextCursor;
    } while (cursor !== null && sizes.length < 10);
    expect(sizes).toEqual([10, 10, 5]);
    expect(refs).toEqual(
      Array.from({ length: GRANTS }, (_, i) => `cs_ledger_${String(GRANTS - 1 - i).padStart(2, '0')}`),
    );
  });

  it('answers 50 entries by default, and the last page says it is the last', async () => {
    const body = bodyOf(await credits(''));
    expect(body.ledger).toHaveLength(GRANTS);
    expect(body.nextCursor).toBeNull();
  });

  it.each([
    ['a forged cursor', `?cursor=${Buffer.from('s|o|bal').toString('base64url')}`],
    ['a cursor that is not base64url', '?cursor=%2F%2F%2F'],
    ['a limit over 100', '?limit=101'],
    ['a limit of 0', '?limit=0'],
    ['an unknown parameter', '?offset=10'],
  ])('refuses %s with 400 invalid_query', async (_name, query) => {
    const response = await credits(query);
    expect(response.status, response.text).toBe(400);
    expect(response.body).toMatchObject({ code: 'invalid_query' });
  });
});
