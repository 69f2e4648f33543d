import { beforeEach, describe, expect, it } from 'vitest';
import { catalog, FLAG_NAMES } from '../../src/billing/catalog.js';
import { usageRowKey } from '../../src/billing/usage.js';
import type { Services } from '../../src/composition.js';
import { givenOwnerRows, givenSubscription, manualClock, memoryServices } from '../support/memory.js';

const free = catalog.free.limits;
const pro = catalog.pro.limits;

/** Fills an organization with `n` workflows. */
async function givenOrgWorkflows(services: Services, orgId: string, n: number, prefix = orgId) {
  for (let i = 0; i < n; i++) {
    await services.directory.putWorkflow(`${prefix}-wf${i}`, {
      workspace: { kind: 'org', orgId },
      nodeCount: 1,
    });
  }
}

function requireLimit(value: number | null): number {
  if (value === null) throw new Error('the test needs a finite limit');
  return value;
}

describe('entitlements', () => {
  let services: Services;
  beforeEach(async () => {
    services = memoryServices();
    await services.directory.putOrg('acme', { creatorId: 'alice' });
  });

  it('puts an owner without a subscription on the free plan', async () => {
    const caps = await services.entitlements.capabilities('alice');
    expect(caps).toMatchObject({ plan: 'free', status: 'none', accessLevel: 'free', limits: free });
  });

  it('denies one more workflow in a full free organization, and allows it after a delete', async () => {
    const perOrg = requireLimit(free.workflows_per_org);
    await givenOrgWorkflows(services, 'acme', perOrg);
    const denied = await services.entitlements.check({
      subject: { orgId: 'acme' },
      feature: 'workflows_per_org',
    });
    expect(denied).toMatchObject({
      allowed: false,
      reason: 'limit_exceeded',
      limit: perOrg,
      used: perOrg,
      remaining: 0,
      enforcement: 'enforce',
      owner: 'alice',
      plan: 'free',
    });
    await services.directory.deleteWorkflow('acme-wf0');
    const allowed = await services.entitlements.check({
      subject: { orgId: 'acme' },
      feature: 'workflows_per_org',
    });
    expect(allowed).toMatchObject({ allowed: true, reason: 'within_limit', used: perOrg - 1, remaining: 1 });
  });

  it("checks the total across the owner's organizations and personal workspace", async () => {
    const total = requireLimit(free.workflows);
    const perOrg = requireLimit(free.workflows_per_org);
    await services.directory.putOrg('beta', { creatorId: 'alice' });
    await givenOrgWorkflows(services, 'acme', perOrg);
    const personal = total - perOrg;
    for (let i = 0; i < personal; i++) {
      await services.directory.putWorkflow(`p${i}`, {
        workspace: { kind: 'personal', userId: 'alice' },
        nodeCount: 1,
      });
    }
    // beta is empty, so the per-org limit allows; the owner's total does not.
    const perOrgDecision = await services.entitlements.check({
      subject: { orgId: 'beta' },
      feature: 'workflows_per_org',
    });
    expect(perOrgDecision.allowed).toBe(true);
    const totalDecision = await services.entitlements.check({
      subject: { orgId: 'beta' },
      feature: 'workflows',
    });
    expect(totalDecision).toMatchObject({ allowed: false, used: total, limit: total, owner: 'alice' });
    const fromPersonal = await services.entitlements.check({
      subject: { userId: 'alice' },
      feature: 'workflows',
    });
    expect(fromPersonal).toMatchObject({ allowed: false, used: total });
  });

  it('resolves a workflow run to the owner of its workspace', async () => {
    await givenOrgWorkflows(services, 'acme', 1);
    const decision = await services.entitlements.check({
      subject: { workflowId: 'acme-wf0' },
      feature: 'executions',
    });
    expect(decision).toMatchObject({ owner: 'alice', allowed: true, used: 0, limit: free.executions });
    await expect(
      services.entitlements.check({ subject: { workflowId: 'missing' }, feature: 'executions' }),
    ).rejects.toMatchObject({ code: 'workflow_not_found' });
    await expect(
      services.entitlements.check({
        subject: { workflowId: 'acme-wf0', orgId: 'beta' },
        feature: 'executions',
      }),
    ).rejects.toMatchObject({ code: 'subject_inconsistent' });
  });

  it('follows a workflow moved to another owner (where it was last seen is only a guess)', async () => {
    await services.directory.putOrg('elsewhere', { creatorId: 'bob' });
    await services.directory.putWorkflow('mover', {
      workspace: { kind: 'org', orgId: 'acme' },
      nodeCount: 1,
    });
    const before = await services.entitlements.check({
      subject: { workflowId: 'mover' },
      feature: 'executions',
    });
    expect(before.owner).toBe('alice');
    await services.directory.putWorkflow('mover', {
      workspace: { kind: 'org', orgId: 'elsewhere' },
      nodeCount: 1,
    });
    const after = await services.entitlements.check({
      subject: { workflowId: 'mover' },
      feature: 'executions',
    });
    expect(after.owner).toBe('bob');
    await services.directory.deleteWorkflow('mover');
    await expect(
      services.entitlements.check({ subject: { workflowId: 'mover' }, feature: 'executions' }),
    ).rejects.toMatchObject({ code: 'workflow_not_found' });
  });

  it('counts executions of the current period from its counter, and a quantity that would cross the limit is denied', async () => {
    const limit = requireLimit(free.executions);
    const caps = await services.entitlements.capabilities('alice');
    await givenOwnerRows(services, 'alice', {
      [usageRowKey('executions', caps.period)]: {
        used: limit - 2,
      },
    });
    expect(
      await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'executions', quantity: 2 }),
    ).toMatchObject({ allowed: true, remaining: 2 });
    expect(
      await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'executions', quantity: 3 }),
    ).toMatchObject({ allowed: false, reason: 'limit_exceeded', remaining: 2 });
  });

  it('starts a new calendar month at zero without any reset', async () => {
    const clock = manualClock('2026-11-30T23:59:00.000Z');
    services = memoryServices({}, clock);
    const caps = await services.entitlements.capabilities('bob');
    await givenOwnerRows(services, 'bob', {
      [usageRowKey('executions', caps.period)]: {
        used: requireLimit(free.executions),
      },
    });
    expect(
      (await services.entitlements.check({ subject: { userId: 'bob' }, feature: 'executions' })).allowed,
    ).toBe(false);
    clock.set('2026-12-01T00:00:00.000Z');
    expect(
      await services.entitlements.check({ subject: { userId: 'bob' }, feature: 'executions' }),
    ).toMatchObject({
      allowed: true,
      used: 0,
    });
  });

  it('answers nodes_per_workflow from the node count being saved, or from the stored workflow', async () => {
    const limit = requireLimit(free.nodes_per_workflow);
    const at = await services.entitlements.check({
      subject: { userId: 'alice' },
      feature: 'nodes_per_workflow',
      quantity: limit,
    });
    expect(at).toMatchObject({ allowed: true, used: limit, remaining: 0 });
    const over = await services.entitlements.check({
      subject: { userId: 'alice' },
      feature: 'nodes_per_workflow',
      quantity: limit + 1,
    });
    expect(over).toMatchObject({ allowed: false, reason: 'limit_exceeded' });
    // Too big to be created under enforce (402), so recorded as a backfill would be.
    await expect(
      services.directory.putWorkflow('big', {
        workspace: { kind: 'org', orgId: 'acme' },
        nodeCount: limit + 5,
      }),
    ).rejects.toMatchObject({ code: 'limit_exceeded', extensions: { feature: 'nodes_per_workflow', limit } });
    await services.directory.putWorkflow('big', {
      workspace: { kind: 'org', orgId: 'acme' },
      nodeCount: limit + 5,
      enforce: false,
    });
    expect(
      (await services.entitlements.check({ subject: { workflowId: 'big' }, feature: 'nodes_per_workflow' }))
        .allowed,
    ).toBe(false);
    await expect(
      services.entitlements.check({ subject: { userId: 'alice' }, feature: 'nodes_per_workflow' }),
    ).rejects.toMatchObject({ code: 'quantity_required' });
  });

  it('does not apply the per-organization limit to a personal workspace', async () => {
    const decision = await services.entitlements.check({
      subject: { userId: 'alice' },
      feature: 'workflows_per_org',
    });
    expect(decision).toMatchObject({ allowed: true, reason: 'not_applicable', used: null });
  });

  it.each(FLAG_NAMES)('answers the %s flag from the plan', async (flag) => {
    const onFree = await services.entitlements.check({ subject: { userId: 'alice' }, feature: flag });
    expect(onFree.allowed).toBe(catalog.free.flags[flag]);
    expect(onFree.reason).toBe(catalog.free.flags[flag] ? 'feature_enabled' : 'feature_not_in_plan');
    await givenSubscription(services, 'alice', { plan: 'enterprise', status: 'active' });
    const onEnterprise = await services.entitlements.check({ subject: { userId: 'alice' }, feature: flag });
    expect(onEnterprise.allowed).toBe(catalog.enterprise.flags[flag]);
  });

  it('refuses a quantity for a flag', async () => {
    await expect(
      services.entitlements.check({ subject: { userId: 'alice' }, feature: 'ai_nodes', quantity: 1 }),
    ).rejects.toMatchObject({ code: 'quantity_not_applicable' });
  });

  it('gives a paid plan its limits at once, and unlimited where the plan says null', async () => {
    await givenOrgWorkflows(services, 'acme', requireLimit(free.workflows_per_org));
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'active' });
    const decision = await services.entitlements.check({
      subject: { orgId: 'acme' },
      feature: 'workflows_per_org',
    });
    expect(decision).toMatchObject({ allowed: true, plan: 'pro', limit: pro.workflows_per_org });
    await givenSubscription(services, 'alice', { plan: 'enterprise', status: 'active' });
    expect(
      await services.entitlements.check({ subject: { orgId: 'acme' }, feature: 'workflows' }),
    ).toMatchObject({
      allowed: true,
      reason: 'unlimited',
      limit: null,
    });
  });

  it('bills seats on per-seat plans instead of limiting them: no pre-bought limit', async () => {
    requireLimit(catalog.team.limits.seats);
    await givenSubscription(services, 'alice', { plan: 'team', status: 'active', seats: 1 });
    expect((await services.entitlements.capabilities('alice')).limits.seats).toBeNull();
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'active', seats: 1 });
    expect((await services.entitlements.capabilities('alice')).limits.seats).toBe(catalog.pro.limits.seats);
  });

  it.each([
    ['trialing', 'full'],
    ['active', 'full'],
    ['retrying', 'full'],
    ['grace', 'grace'],
    ['past_due', 'locked'],
    ['unpaid', 'locked'],
    ['paused', 'locked'],
    ['incomplete', 'free'],
    ['canceled', 'free'],
  ] as const)('maps status %s to access level %s', async (status, level) => {
    await givenSubscription(services, 'alice', { plan: 'pro', status });
    const caps = await services.entitlements.capabilities('alice');
    expect(caps.accessLevel).toBe(level);
    expect(caps.plan).toBe(level === 'free' ? 'free' : 'pro');
  });

  it('locks paid features while payment is past due, saying payment would fix it', async () => {
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'past_due' });
    expect(
      await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'ai_nodes' }),
    ).toMatchObject({
      allowed: false,
      reason: 'payment_required',
      accessLevel: 'locked',
    });
    await givenOrgWorkflows(services, 'acme', requireLimit(free.workflows_per_org));
    expect(
      await services.entitlements.check({ subject: { orgId: 'acme' }, feature: 'workflows_per_org' }),
    ).toMatchObject({
      allowed: false,
      reason: 'payment_required',
      limit: free.workflows_per_org,
    });
  });

  it('keeps limits soft during grace: allowed, and the would-be denial recorded', async () => {
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'grace' });
    await givenOrgWorkflows(services, 'acme', requireLimit(pro.workflows_per_org));
    const decision = await services.entitlements.check({
      subject: { orgId: 'acme' },
      feature: 'workflows_per_org',
    });
    expect(decision).toMatchObject({
      allowed: true,
      reason: 'limit_exceeded',
      enforcement: 'monitor',
      accessLevel: 'grace',
    });
    const records = await services.tables.billing.list('alice', { prefix: 'monitor|' });
    expect(records.map((r) => [r.props.feature, r.props.reason, r.props.why])).toEqual([
      ['workflows_per_org', 'limit_exceeded', 'grace'],
    ]);
  });
});

describe('enforcement modes', () => {
  it('monitor allows, keeps the reason, and records the would-be denial', async () => {
    const services = memoryServices({ ENFORCEMENT_OVERRIDES: 'workflows_per_org=monitor' });
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await givenOrgWorkflows(services, 'acme', requireLimit(free.workflows_per_org));
    const decision = await services.entitlements.check({
      subject: { orgId: 'acme' },
      feature: 'workflows_per_org',
    });
    expect(decision).toMatchObject({ allowed: true, reason: 'limit_exceeded', enforcement: 'monitor' });
    const records = await services.tables.billing.list('alice', { prefix: 'monitor|' });
    expect(records).toHaveLength(1);
    expect(records[0]?.props).toMatchObject({
      feature: 'workflows_per_org',
      reason: 'limit_exceeded',
      why: 'monitor',
    });
    // Other features stay enforced.
    expect(
      (await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'ai_nodes' })).allowed,
    ).toBe(false);
  });

  it('off allows without counting', async () => {
    const services = memoryServices({ ENFORCEMENT_DEFAULT: 'off' });
    const decision = await services.entitlements.check({ subject: { userId: 'alice' }, feature: 'ai_nodes' });
    expect(decision).toMatchObject({
      allowed: true,
      reason: 'enforcement_off',
      enforcement: 'off',
      used: null,
    });
    expect(await services.tables.billing.list('alice', { prefix: 'monitor|' })).toHaveLength(0);
  });
});
