import { describe, expect, it } from 'vitest';
import type { Services } from '../../src/composition.js';
import { directoryViolations } from '../support/invariants.js';
import { manualClock } from '../support/memory.js';
import { memoryTables, STORES, servicesOver as servicesOn, type Tables } from '../support/stores.js';
import { faultyTables, InjectedFailure } from '../support/tables.js';

/**
 * Owners stored in the first layout (docs/decisions/0002) keep working: they are brought over to the
 * snapshot layout on their first read, or by the sweep, whichever comes first; the sweep then removes
 * the old rows and records that it is done. A crash at any point of a migration is finished by the
 * next read.
 */

const at = (minute: number) => new Date(Date.UTC(2026, 9, 1, 12, minute)).toISOString();

/**
 * alice: canceled Pro (so on free), organizations acme (7 workflows, over free's 5 per organization,
 * one picked to keep, a credential, members bob and carl) and beta (bob), a personal workflow, 42
 * credits and 12 executions this month. dave: only a workflow, never read before the sweep.
 */
async function givenFirstLayout(tables: Tables): Promise<void> {
  const { directory, billing } = tables;
  await directory.upsert('owner:alice', 'org|acme', { name: 'Acme', createdAt: at(0) });
  await directory.upsert('owner:alice', 'org|beta', { name: 'Beta', createdAt: at(1) });
  await directory.upsert('org:acme', 'ref', { ownerId: 'alice', name: 'Acme', createdAt: at(0) });
  await directory.upsert('org:beta', 'ref', { ownerId: 'alice', name: 'Beta', createdAt: at(1) });
  for (const [orgId, userId] of [
    ['acme', 'bob'],
    ['acme', 'carl'],
    ['beta', 'bob'],
  ]) {
    await directory.upsert('owner:alice', `member|${orgId}|${userId}`, { role: 'member', addedAt: at(2) });
  }
  for (let i = 1; i <= 7; i++) {
    await directory.upsert('owner:alice', `workflow|org:acme|w${i}`, { createdAt: at(10 + i), nodeCount: 3 });
    await directory.upsert(`workflow:w${i}`, 'ref', {
      workspace: 'org:acme',
      createdAt: at(10 + i),
      nodeCount: 3,
    });
  }
  await directory.upsert('owner:alice', 'workflow|user:alice|p1', { createdAt: at(30), nodeCount: 1 });
  await directory.upsert('workflow:p1', 'ref', { workspace: 'user:alice', createdAt: at(30), nodeCount: 1 });
  await directory.upsert('owner:alice', 'credential|org:acme|c1', { createdAt: at(31) });
  await directory.upsert('credential:c1', 'ref', { workspace: 'org:acme', createdAt: at(31) });
  await billing.upsert('alice', 'subscription', {
    plan: 'pro',
    interval: 'monthly',
    status: 'canceled',
    seats: 1,
    currentPeriodStart: '2026-10-01T00:00:00.000Z',
    currentPeriodEnd: '2026-11-01T00:00:00.000Z',
    cancelAtPeriodEnd: false,
    updatedAt: at(40),
  });
  await billing.upsert('alice', 'credits|balance', { balance: 42, updatedAt: at(41) });
  await billing.upsert('alice', 'locks|keep', { workflows: '["w7"]', credentials: '[]' });
  await billing.upsert('alice', 'usage|executions|2026-11', {
    used: 12,
    allowanceUsed: 12,
    creditsUsed: 0,
    overage: 0,
    allowance: 1000,
    periodStart: '2026-11-01T00:00:00.000Z',
    periodEnd: '2026-12-01T00:00:00.000Z',
    createdAt: at(42),
    updatedAt: at(42),
  });
  await directory.upsert('owner:dave', 'workflow|user:dave|d1', { createdAt: at(50), nodeCount: 2 });
  await directory.upsert('workflow:d1', 'ref', { workspace: 'user:dave', createdAt: at(50), nodeCount: 2 });
}

const servicesOver = (tables: Tables): Services =>
  servicesOn(tables, { clock: manualClock('2026-11-15T12:00:00.000Z') });

/** What alice's owner looks like through the API; the same before and after the sweep. */
async function aliceAnswers(services: Services) {
  const perOrg = await services.entitlements.check({
    subject: { orgId: 'acme' },
    feature: 'workflows_per_org',
  });
  const summary = await services.summaries.forWorkspace('alice', { kind: 'org', orgId: 'acme' }, 'alice');
  const locked = await services.entitlements.check({ subject: { workflowId: 'w6' }, feature: 'executions' });
  const picked = await services.entitlements.check({ subject: { workflowId: 'w7' }, feature: 'executions' });
  return {
    perOrg: [perOrg.allowed, perOrg.used, perOrg.limit],
    counts: await services.directory.counts('alice'),
    plan: [summary.plan.name, summary.status],
    credits: summary.credits.balance,
    executions: summary.usage.executions.used,
    locked: summary.locked.workflows.map((w) => w.id),
    runs: [locked.reason, picked.reason],
    member: await services.directory.isMember('acme', 'carl'),
  };
}

const SCOPE = {
  owners: ['alice', 'dave'],
  orgs: ['acme', 'beta'],
  workflows: ['w1', 'w2', 'w3', 'w4', 'w5', 'w6', 'w7', 'p1', 'd1', 'w8'],
  credentials: ['c1'],
};

describe.each(STORES)('owners in the first layout (%s)', (_name, makeTables) => {
  it('answer as before on their first read, and the same after the sweep removed the old rows', async () => {
    const tables = makeTables();
    await givenFirstLayout(tables);
    const services = servicesOver(tables);
    const before = await aliceAnswers(services);
    expect(before).toEqual({
      perOrg: [false, 7, 5],
      counts: {
        workflows: 8,
        credentials: 1,
        seats: 3,
        orgs: [
          { orgId: 'acme', name: 'Acme', workflows: 7 },
          { orgId: 'beta', name: 'Beta', workflows: 0 },
        ],
      },
      plan: ['free', 'canceled'],
      credits: 42,
      executions: 12,
      // w7 was picked, then the oldest: w1..w4 kept, w5 and w6 locked.
      locked: ['w5', 'w6'],
      runs: ['resource_locked', 'within_limit'],
      member: true,
    });
    // It works as any owner does: the period's counter goes on, limits hold, old items delete.
    const consumed = await services.usage.consume({
      subject: { userId: 'alice' },
      meter: 'executions',
      quantity: 1,
      idempotencyKey: 'after-migration',
    });
    expect(consumed.outcome).toMatchObject({ used: 13, periodKey: '2026-11' });
    await expect(
      services.directory.putWorkflow('w8', { workspace: { kind: 'org', orgId: 'acme' }, nodeCount: 1 }),
    ).rejects.toMatchObject({ code: 'limit_exceeded' });
    await services.directory.deleteWorkflow('w1');
    expect((await services.directory.counts('alice')).workflows).toBe(7);
    expect((await services.directory.getWorkflow('d1'))?.ownerId).toBe('dave');

    const report = await services.migration.run();
    expect(report).toMatchObject({ complete: true, owners: 2 });
    expect(report.removed).toBeGreaterThan(10);
    expect(await tables.directory.list('owner:alice')).toEqual([]);
    expect(await tables.directory.list('owner:dave')).toEqual([]);
    expect(await tables.billing.get('alice', 'subscription')).toBeUndefined();
    expect(await tables.billing.list('alice', { prefix: 'usage|' })).toEqual([]);
    // Index rows now name their owner, so a workflow subject needs no organization look-up.
    expect((await tables.directory.get('workflow:w2', 'ref'))?.props).toMatchObject({
      owner: 'alice',
      gen: 0,
    });
    const fresh = servicesOver(tables);
    expect(await fresh.migration.complete()).toBe(true);
    const after = await aliceAnswers(fresh);
    // As before, less w1 (deleted) and with the run consumed after the migration.
    expect(after).toEqual({
      ...before,
      perOrg: [false, 6, 5],
      executions: 13,
      counts: {
        ...before.counts,
        workflows: 7,
        orgs: [{ orgId: 'acme', name: 'Acme', workflows: 6 }, before.counts.orgs[1]],
      },
      locked: ['w6'],
    });
    expect((await fresh.directory.counts('dave')).workflows).toBe(1);
    expect(await directoryViolations(tables, SCOPE)).toEqual([]);
  }, 120_000);

  it('finish a migration that a failure interrupted at any storage call', async () => {
    const reference = makeTables();
    await givenFirstLayout(reference);
    const counted = faultyTables(reference);
    counted.faults.failCall(0, 'before');
    const expected = await aliceAnswers(servicesOver(counted.tables));
    const calls = counted.faults.calls;
    // The migration is in the first read's calls; every one of them fails once, in both ways.
    for (const mode of ['before', 'after'] as const) {
      for (let call = 1; call <= calls; call += makeTables === memoryTables ? 1 : 3) {
        const tables = makeTables();
        await givenFirstLayout(tables);
        const faulty = faultyTables(tables);
        faulty.faults.failCall(call, mode);
        const failed = await aliceAnswers(servicesOver(faulty.tables)).then(
          () => false,
          (error: unknown) =>
            error instanceof InjectedFailure ||
            (error instanceof Error && error.cause instanceof InjectedFailure),
        );
        expect({ call, mode, failed }).toEqual({ call, mode, failed: true });
        expect({ call, mode, answers: await aliceAnswers(servicesOver(tables)) }).toEqual({
          call,
          mode,
          answers: expected,
        });
        const alicesScope = {
          ...SCOPE,
          owners: ['alice'],
          workflows: SCOPE.workflows.filter((w) => w !== 'd1'),
        };
        expect(await directoryViolations(tables, alicesScope)).toEqual([]);
      }
    }
  }, 300_000);
});
