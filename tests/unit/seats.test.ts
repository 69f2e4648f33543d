import { beforeEach, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { SEAT_CAP_ROW } from '../../src/billing/owner/keys.js';
import { perSeatQuantity, quantityFor } from '../../src/billing/seats.js';
import type { Services } from '../../src/composition.js';
import { givenSubscription, memoryServices } from '../support/memory.js';

describe('seat quantity', () => {
  it('bills the larger of the included seats and the people, per-seat plans only', () => {
    const included = catalog.team.limits.seats ?? 0;
    expect(perSeatQuantity(catalog.team, 1)).toBe(included);
    expect(perSeatQuantity(catalog.team, included + 2)).toBe(included + 2);
    // Enterprise includes no seats in the catalog (a contract says): at least one.
    expect(perSeatQuantity(catalog.enterprise, 0)).toBe(1);
    expect(quantityFor(catalog.pro, 40)).toBe(1);
  });
});

describe('seats at member create', () => {
  let services: Services;
  beforeEach(async () => {
    services = memoryServices();
    await services.directory.putOrg('acme', { creatorId: 'alice' });
  });

  it("refuses a free owner's third person with 402 limit_exceeded, writing nothing", async () => {
    expect(catalog.free.limits.seats).toBe(2);
    await services.directory.putMember('acme', 'bob', { enforce: true });
    const version = (await services.owners.read('alice')).version.value;
    await expect(services.directory.putMember('acme', 'carol', { enforce: true })).rejects.toMatchObject({
      kind: 'payment_required',
      code: 'limit_exceeded',
    });
    expect((await services.owners.read('alice')).version.value).toBe(version);
    expect((await services.directory.counts('alice')).seats).toBe(2);
  });

  it('never refuses a per-seat owner for lack of pre-bought seats', async () => {
    await givenSubscription(services, 'alice', { plan: 'team', status: 'active', seats: 3 });
    for (const user of ['b', 'c', 'd', 'e', 'f', 'g']) {
      await services.directory.putMember('acme', user, { enforce: true });
    }
    expect((await services.directory.counts('alice')).seats).toBe(7);
  });

  it('refuses past the owner cap with seat_cap_reached and writes nothing; null lifts it', async () => {
    await givenSubscription(services, 'alice', { plan: 'team', status: 'active', seats: 3 });
    await services.seatCaps.set({ ownerId: 'alice', maxSeats: 2, actor: 'alice', requestId: 'req-48' });
    const capRow = await services.tables.billing.get('alice', SEAT_CAP_ROW);
    expect(capRow?.props.maxSeats).toBe(2);
    await services.directory.putMember('acme', 'bob', { enforce: true });
    const before = await services.owners.read('alice');
    await expect(services.directory.putMember('acme', 'carol', { enforce: true })).rejects.toMatchObject({
      kind: 'payment_required',
      code: 'seat_cap_reached',
      extensions: { feature: 'seats', limit: 2, used: 2 },
    });
    const after = await services.owners.read('alice');
    expect(after.version.value).toBe(before.version.value);
    expect(await services.tables.billing.get('alice', 'member|acme|carol')).toBeUndefined();
    // Someone already holding a seat is not a new person: never refused by the cap.
    await services.directory.putOrg('beta', { creatorId: 'alice' });
    await services.directory.putMember('beta', 'bob', { enforce: true });
    await services.seatCaps.set({ ownerId: 'alice', maxSeats: null, actor: 'alice', requestId: 'req-64' });
    expect((await services.owners.read('alice')).seatCap.maxSeats).toBeNull();
    await services.directory.putMember('acme', 'carol', { enforce: true });
    expect((await services.directory.counts('alice')).seats).toBe(3);
  });

  it('bumps the snapshot version with the cap, and leaves it alone when nothing changes', async () => {
    const v0 = (await services.owners.read('alice')).version.value;
    expect(
      (await services.seatCaps.set({ ownerId: 'alice', maxSeats: 4, actor: 'alice', requestId: 'req-72' }))
        .changed,
    ).toBe(true);
    const v1 = (await services.owners.read('alice')).version.value;
    expect(v1).toBe(v0 + 1);
    expect(
      (await services.seatCaps.set({ ownerId: 'alice', maxSeats: 4, actor: 'alice', requestId: 'req-77' }))
        .changed,
    ).toBe(false);
    expect((await services.owners.read('alice')).version.value).toBe(v1);
  });

  it('summarises seats: used, billed this period, billed next period, and the cap', async () => {
    await services.directory.putMember('acme', 'bob', { enforce: true });
    const free = await services.summaries.forWorkspace(
      'alice',
      { kind: 'personal', userId: 'alice' },
      'alice',
    );
    expect(free.seats).toEqual({ used: 2, billed: null, nextPeriod: null, maxSeats: null });
    await givenSubscription(services, 'alice', {
      plan: 'team',
      status: 'active',
      seats: 5,
      scheduledPlan: 'team',
      scheduledInterval: 'monthly',
      scheduledSeats: 3,
      scheduledAt: '2026-12-01T00:00:00.000Z',
    });
    await services.seatCaps.set({ ownerId: 'alice', maxSeats: 9, actor: 'alice', requestId: 'req-100' });
    const team = await services.summaries.forWorkspace(
      'alice',
      { kind: 'personal', userId: 'alice' },
      'alice',
    );
    expect(team.seats).toEqual({ used: 2, billed: 5, nextPeriod: 3, maxSeats: 9 });
    // Fewer seats at renewal on the same plan is not a plan change.
    expect(team.scheduledChange).toBeNull();
  });
});
