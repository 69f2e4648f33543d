import { describe, expect, it } from 'vitest';
import type { FeatureName } from '../../src/billing/catalog.js';
import type { Subject } from '../../src/billing/entitlements.js';
import type { Services } from '../../src/composition.js';
import { tenantOf } from '../../src/http/tenant.js';
import { givenSubscription } from '../support/memory.js';
import { azuriteTables, memoryTables, servicesOver, type Tables } from '../support/stores.js';
import { type CallLog, countingTables } from '../support/tables.js';

/**
 * What a decision costs in storage round trips, counted at the storage port: at most 1 for a user or
 * an organization subject, at most 2 for a workflow subject, at most 4 for the summary, whatever the
 * owner's size and whether or not it is over a limit.
 */

const org = (orgId: string) => ({ kind: 'org', orgId }) as const;

async function setUp(
  makeTables: () => Tables,
  bigItems: number,
): Promise<{ services: Services; log: CallLog }> {
  const { tables, log } = countingTables(makeTables());
  const services = servicesOver(tables);
  // A deployment's sweep has run: reads no longer look for the first layout.
  expect((await services.migration.run()).complete).toBe(true);
  const d = services.directory;
  // small: 10 workflows (Pro). big: many (Enterprise). over: a free owner with far more than free allows.
  await givenSubscription(services, 'small', { plan: 'pro', status: 'active' });
  await d.putOrg('small-org', { creatorId: 'small' });
  for (let i = 0; i < 10; i++)
    await d.putWorkflow(`small-${i}`, { workspace: org('small-org'), nodeCount: 2 });
  await givenSubscription(services, 'big', { plan: 'enterprise', status: 'active' });
  await d.putOrg('big-org', { creatorId: 'big' });
  await Promise.all(
    Array.from({ length: bigItems }, (_, i) =>
      d.putWorkflow(`big-${i}`, { workspace: org('big-org'), nodeCount: 2 }),
    ),
  );
  await d.putOrg('over-org', { creatorId: 'over' });
  await Promise.all(
    Array.from({ length: 40 }, (_, i) =>
      d.putWorkflow(`over-${i}`, { workspace: org('over-org'), nodeCount: 2, enforce: false }),
    ),
  );
  await d.putMember('over-org', 'member', {});
  return { services, log };
}

async function roundTrips(log: CallLog, work: () => Promise<unknown>): Promise<number> {
  log.reset();
  await work();
  return log.calls.length;
}

describe.each([
  ['memory', memoryTables, 1_000],
  ['azurite', azuriteTables, 250],
] as const)('round trips per decision (%s)', (_name, makeTables, bigItems) => {
  it('checks cost 1 for user and organization subjects and 2 for a workflow, for any owner size', async () => {
    const { services, log } = await setUp(makeTables, bigItems);
    const check = (subject: Subject, feature: FeatureName) =>
      services.entitlements.check({ subject, feature });
    // The organization -> creator mapping is remembered after the first look-up.
    for (const orgId of ['small-org', 'big-org', 'over-org']) await check({ orgId }, 'ai_nodes');
    const measured: Record<string, number> = {};
    for (const owner of ['small', 'big', 'over']) {
      for (const feature of ['ai_nodes', 'workflows', 'executions'] as const) {
        measured[`${owner} user ${feature}`] = await roundTrips(log, () => check({ userId: owner }, feature));
        measured[`${owner} org ${feature}`] = await roundTrips(log, () =>
          check({ orgId: `${owner}-org` }, feature),
        );
        measured[`${owner} workflow ${feature}`] = await roundTrips(log, () =>
          check({ workflowId: `${owner}-${owner === 'big' ? bigItems - 1 : 9}` }, feature),
        );
      }
      measured[`${owner} org workflows_per_org`] = await roundTrips(log, () =>
        check({ orgId: `${owner}-org` }, 'workflows_per_org'),
      );
    }
    for (const [what, calls] of Object.entries(measured)) {
      const allowed = what.includes(' workflow ') ? 2 : 1;
      expect({ what, calls }).toEqual({ what, calls: Math.min(calls, allowed) });
    }
    // The over-limit owner's newest workflow is locked, and that answer took the same 2 round trips.
    const locked = await services.entitlements.check({
      subject: { workflowId: 'over-39' },
      feature: 'executions',
    });
    expect(locked).toMatchObject({ allowed: false, reason: 'resource_locked' });
  }, 120_000);

  it('a first check of an organization costs one more, to learn its creator', async () => {
    const { services, log } = await setUp(makeTables, 10);
    const fresh = servicesOver(services.tables);
    await fresh.migration.run();
    // A process reads the enforcement cohort rules once per 30 seconds (`ops/cohorts.ts`), beside the
    // decision that needs them; counted apart here so the costs below are the decision's own.
    expect(await roundTrips(log, () => fresh.cohorts.current())).toBe(1);
    expect(await roundTrips(log, () => fresh.cohorts.current())).toBe(0);
    expect(
      await roundTrips(log, () =>
        fresh.entitlements.check({ subject: { orgId: 'small-org' }, feature: 'ai_nodes' }),
      ),
    ).toBe(2);
    expect(
      await roundTrips(log, () =>
        fresh.entitlements.check({ subject: { orgId: 'small-org' }, feature: 'ai_nodes' }),
      ),
    ).toBe(1);
  }, 120_000);

  it('the summary costs at most 4, locks included; a consumption 2 once its owner is known', async () => {
    const { services, log } = await setUp(makeTables, bigItems);
    const summary = async (userId: string, orgId: string) => {
      const { ownerId, workspace } = await tenantOf(
        { userId, orgId, roles: new Set<string>() },
        services.directory,
      );
      return services.summaries.forWorkspace(ownerId, workspace, userId);
    };
    await summary('over', 'over-org');
    const asOwner = await roundTrips(log, () => summary('over', 'over-org'));
    const asMember = await roundTrips(log, () => summary('member', 'over-org'));
    const bigOwner = await roundTrips(log, () => summary('big', 'big-org'));
    expect({ asOwner, asMember, bigOwner }).toEqual({
      asOwner: Math.min(asOwner, 4),
      asMember: Math.min(asMember, 4),
      bigOwner: Math.min(bigOwner, 4),
    });
    expect((await summary('over', 'over-org')).locked.workflows.length).toBeGreaterThan(0);
    const consume = (idempotencyKey: string) =>
      services.usage.consume({
        subject: { workflowId: `big-${bigItems - 1}` },
        meter: 'executions',
        quantity: 1,
        idempotencyKey,
      });
    // The period's first consumption also writes its rollover index row (once per period and process)
    // and its retention index row (once per owner, month and process).
    expect(await roundTrips(log, () => consume('first'))).toBeLessThanOrEqual(5);
    // Then: the workflow's index and the transaction; the snapshot the process kept is checked by the
    // transaction's condition on its version.
    expect(await roundTrips(log, () => consume('second'))).toBe(2);
  }, 120_000);
});
