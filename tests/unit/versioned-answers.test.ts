import { describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { BillingError } from '../../src/billing/errors.js';
import type { Services } from '../../src/composition.js';
import { givenSubscription } from '../support/memory.js';
import { memoryTables, servicesOver, type Tables } from '../support/stores.js';
import { type CallLog, countingTables } from '../support/tables.js';

/**
 * Versioned answers (issue 12, item 1): every check, consume and summary says which version of the
 * owner's snapshot it was computed from; `minVersion` makes a node drop cached state older than that, and
 * a version that does not exist yet is a 409, never an older answer.
 */

const org = { kind: 'org', orgId: 'acme' } as const;

async function setUp(): Promise<{ tables: Tables; services: Services; log: CallLog }> {
  const { tables, log } = countingTables(memoryTables());
  const services = servicesOver(tables);
  expect((await services.migration.run()).complete).toBe(true);
  await services.directory.putOrg('acme', { creatorId: 'alice' });
  return { tables, services, log };
}

async function rejection(work: Promise<unknown>): Promise<BillingError> {
  const error = await work.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof BillingError)) throw new Error(`expected a BillingError, got ${String(error)}`);
  return error;
}

let key = 0;
const consume = (services: Services, minVersion?: number) =>
  services.usage.consume({
    subject: { userId: 'alice' },
    meter: 'executions',
    quantity: 1,
    idempotencyKey: `run-${++key}`,
    minVersion,
  });

describe('versioned answers', () => {
  it('gives every check, consume and summary the version and read time of the snapshot', async () => {
    const { services } = await setUp();
    const check = await services.entitlements.check({ subject: { orgId: 'acme' }, feature: 'workflows' });
    expect(check.version).toBeGreaterThan(0);
    expect(new Date(check.asOf).toISOString()).toBe(check.asOf);
    const summary = await services.summaries.forWorkspace('alice', org, 'alice');
    expect(summary).toMatchObject({ version: check.version, asOf: check.asOf });
    const consumed = await consume(services);
    // A consumption bumps the version in its own transaction, and says which version it left.
    expect(consumed.outcome).toMatchObject({ version: check.version + 1 });
    const after = await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'executions' });
    expect(after).toMatchObject({ version: check.version + 1, used: 1 });
  });

  it('shows a directory PUT and a subscription change in the version of the next answer', async () => {
    const { services } = await setUp();
    const ask = () => services.entitlements.check({ subject: { orgId: 'acme' }, feature: 'workflows' });
    const v0 = (await ask()).version;
    await services.directory.putWorkflow('wf1', { workspace: org, nodeCount: 1 });
    const v1 = await ask();
    expect(v1).toMatchObject({ version: v0 + 1, used: 1 });
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'active' });
    const v2 = await ask();
    expect(v2).toMatchObject({ version: v0 + 2, plan: 'pro' });
    expect((await services.summaries.forWorkspace('alice', org, 'alice')).version).toBe(v0 + 2);
  });

  it('costs no extra round trip for a check with a minVersion already reached', async () => {
    const { services, log } = await setUp();
    const check = (minVersion?: number) =>
      services.entitlements.check({ subject: { orgId: 'acme' }, feature: 'workflows', minVersion });
    const { version } = await check();
    for (const minVersion of [undefined, 0, version]) {
      log.reset();
      expect((await check(minVersion)).version).toBe(version);
      // The remembered organization -> creator mapping, then one snapshot read.
      expect(log.calls.map((c) => `${c.table}.${c.method}`)).toEqual(['billing.list']);
    }
  });

  it("reads afresh only when metering's kept snapshot is older than minVersion", async () => {
    const { tables, services, log } = await setUp();
    const other = servicesOver(tables); // another process, changing the owner behind this one's back
    const first = await consume(services);
    const kept = first.outcome.version;

    // Kept snapshot as new as asked: the consumption decides from it, one transaction, no read.
    log.reset();
    expect((await consume(services, kept)).outcome.version).toBe(kept + 1);
    expect(log.count({ table: 'billing', method: 'list' })).toBe(0);
    expect(log.count({ table: 'billing', method: 'transact' })).toBe(1);

    await givenSubscription(other, 'alice', { plan: 'pro', status: 'active' });
    const changed = (await other.entitlements.check({ subject: { userId: 'alice' }, feature: 'executions' }))
      .version;
    expect(changed).toBe(kept + 2);

    // Kept snapshot older than minVersion: one fresh read, and the transaction commits the first time.
    log.reset();
    const fresh = await consume(services, changed);
    expect(fresh.outcome).toMatchObject({ version: changed + 1, allowance: catalog.pro.limits.executions });
    expect(log.count({ table: 'billing', method: 'list' })).toBe(1);
    expect(log.count({ table: 'billing', method: 'transact' })).toBe(1);
  });

  it('without minVersion a stale kept snapshot still loses: the version condition fails and it reads', async () => {
    const { tables, services, log } = await setUp();
    const other = servicesOver(tables);
    await consume(services);
    await givenSubscription(other, 'alice', { plan: 'pro', status: 'active' });
    log.reset();
    expect((await consume(services)).outcome.allowance).toBe(catalog.pro.limits.executions);
    // The bet on the kept snapshot costs a failed transaction that minVersion would have saved.
    expect(log.count({ table: 'billing', method: 'transact' })).toBe(2);
  });

  it('replays the first answer with its own version, in another process too', async () => {
    const { tables, services } = await setUp();
    const request = {
      subject: { userId: 'alice' },
      meter: 'executions',
      quantity: 1,
      idempotencyKey: 'run-once',
    } as const;
    const first = await services.usage.consume(request);
    await consume(services); // the owner moves on
    const again = await servicesOver(tables).usage.consume(request);
    expect(again.outcome).toEqual({ ...first.outcome, replayed: true });
  });

  it('answers version_not_reached with the current version when even a fresh read is older', async () => {
    const { services, log } = await setUp();
    const { version } = await services.entitlements.check({
      subject: { orgId: 'acme' },
      feature: 'workflows',
    });
    const future = version + 5;

    log.reset();
    const checkError = await rejection(
      services.entitlements.check({ subject: { orgId: 'acme' }, feature: 'workflows', minVersion: future }),
    );
    expect(checkError).toMatchObject({
      kind: 'conflict',
      code: 'version_not_reached',
      extensions: { version, minVersion: future },
    });
    // The remembered organization -> creator mapping was looked up afresh before giving up.
    expect(log.calls.map((c) => `${c.table}.${c.method}`)).toEqual([
      'billing.list',
      'directory.get',
      'billing.list',
    ]);

    const consumeError = await rejection(consume(services, future));
    expect(consumeError).toMatchObject({ code: 'version_not_reached', extensions: { version } });
    const summaryError = await rejection(
      services.summaries.forWorkspace('alice', org, 'alice', { minVersion: future }),
    );
    expect(summaryError).toMatchObject({ code: 'version_not_reached', extensions: { version } });
    // Nothing was consumed: the version did not move.
    const now = await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'executions' });
    expect(now).toMatchObject({ version, used: 0 });
  });
});
