import { describe, expect, it } from 'vitest';
import type { ExplainStep } from '../../src/billing/access/explain.js';
import { catalog } from '../../src/billing/catalog.js';
import type { CheckRequest } from '../../src/billing/entitlements.js';
import type { Services } from '../../src/composition.js';
import { givenSubscription } from '../support/memory.js';
import { memoryTables, servicesOver } from '../support/stores.js';
import { countingTables } from '../support/tables.js';

/** The decision trace (issue 12, item 4): `explain: true` names where every input of a check came from. */

const org = { kind: 'org', orgId: 'acme' } as const;

async function setUp(env: Record<string, string> = {}) {
  const { tables, log } = countingTables(memoryTables());
  const services = servicesOver(tables, { env });
  expect((await services.migration.run()).complete).toBe(true);
  await services.directory.putOrg('acme', { creatorId: 'alice' });
  return { services, log };
}

async function explain(services: Services, request: CheckRequest) {
  const answer = await services.entitlements.check({ ...request, explain: true });
  if (!answer.explain) throw new Error('no explain in the answer');
  const steps = answer.explain.steps;
  const step = <K extends ExplainStep['step']>(kind: K) => {
    const found = steps.find((s): s is Extract<ExplainStep, { step: K }> => s.step === kind);
    if (!found) throw new Error(`no ${kind} step in ${JSON.stringify(steps)}`);
    return found;
  };
  return { answer, steps, step };
}

describe('decision trace', () => {
  it('names the owner mapping, plan, limit source, count and enforcement of a check', async () => {
    const { services } = await setUp();
    await services.directory.putWorkflow('wf1', { workspace: org, nodeCount: 2 });
    const first = await explain(services, { subject: { orgId: 'acme' }, feature: 'workflows_per_org' });
    expect(first.steps.map((s) => s.step)).toEqual([
      'owner',
      'plan',
      'limit',
      'usage',
      'enforcement',
      'decision',
    ]);
    expect(first.step('owner')).toEqual({
      step: 'owner',
      subject: { orgId: 'acme' },
      workspace: org,
      owner: 'alice',
      // The creator was remembered when the organization was PUT.
      mapping: 'cached',
    });
    expect(first.step('plan')).toEqual({
      step: 'plan',
      plan: 'free',
      subscribedPlan: null,
      status: 'none',
      accessLevel: 'free',
    });
    expect(first.step('limit')).toEqual({
      step: 'limit',
      feature: 'workflows_per_org',
      limit: catalog.free.limits.workflows_per_org,
      source: 'plan',
      planLimit: catalog.free.limits.workflows_per_org,
      override: null,
      contract: null,
      grace: false,
    });
    expect(first.step('usage')).toMatchObject({ counted: 'org_workflows', used: 1, adding: 1, period: null });
    expect(first.step('enforcement')).toEqual({
      step: 'enforcement',
      configured: 'enforce',
      source: 'default',
      cohortRule: null,
      applied: 'enforce',
      softenedBy: null,
    });
    expect(first.step('decision')).toEqual({ step: 'decision', allowed: true, reason: 'within_limit' });

    // A fresh process has nothing remembered: the mapping is read from the index.
    const elsewhere = memoryTables();
    await servicesOver(elsewhere).directory.putOrg('beta', { creatorId: 'bob' });
    const other = servicesOver(elsewhere);
    const read = await explain(other, { subject: { orgId: 'beta' }, feature: 'ai_nodes' });
    expect(read.step('owner')).toMatchObject({ owner: 'bob', mapping: 'read' });
    expect(read.step('flag')).toEqual({
      step: 'flag',
      feature: 'ai_nodes',
      enabled: catalog.free.flags.ai_nodes,
      source: 'plan',
      planEnabled: catalog.free.flags.ai_nodes,
    });
    const user = await explain(other, { subject: { userId: 'bob' }, feature: 'ai_nodes' });
    expect(user.step('owner')).toMatchObject({ owner: 'bob', mapping: 'none' });
  });

  it('gives the usage period of a meter, and a per-feature enforcement setting', async () => {
    const { services } = await setUp({ ENFORCEMENT_OVERRIDES: 'executions=monitor' });
    await services.usage.consume({
      subject: { userId: 'alice' },
      meter: 'executions',
      quantity: 3,
      idempotencyKey: 'run-1',
    });
    const { step } = await explain(services, { subject: { userId: 'alice' }, feature: 'executions' });
    expect(step('usage')).toEqual({
      step: 'usage',
      feature: 'executions',
      counted: 'period_usage',
      used: 3,
      adding: 1,
      remaining: (catalog.free.limits.executions ?? 0) - 3,
      period: { key: '2026-11', start: '2026-11-01T00:00:00.000Z', end: '2026-12-01T00:00:00.000Z' },
    });
    expect(step('enforcement')).toMatchObject({ configured: 'monitor', source: 'feature', softenedBy: null });
  });

  it('names the free plan while payment is locked, and grace softening a denial', async () => {
    const { services } = await setUp();
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'past_due' });
    const locked = await explain(services, { subject: { userId: 'alice' }, feature: 'workflows' });
    expect(locked.step('plan')).toMatchObject({ plan: 'pro', subscribedPlan: 'pro', accessLevel: 'locked' });
    expect(locked.step('limit')).toMatchObject({
      limit: catalog.free.limits.workflows,
      source: 'free_plan_while_locked',
      planLimit: catalog.pro.limits.workflows,
    });

    await givenSubscription(services, 'alice', { plan: 'free', status: 'grace' });
    const perOrg = catalog.free.limits.workflows_per_org ?? 0;
    for (let i = 0; i < perOrg; i++)
      await services.directory.putWorkflow(`wf${i}`, { workspace: org, nodeCount: 1 });
    const grace = await explain(services, { subject: { orgId: 'acme' }, feature: 'workflows_per_org' });
    expect(grace.answer).toMatchObject({ allowed: true, reason: 'limit_exceeded', enforcement: 'monitor' });
    expect(grace.step('limit')).toMatchObject({ grace: true });
    expect(grace.step('enforcement')).toMatchObject({
      configured: 'enforce',
      source: 'default',
      applied: 'monitor',
      softenedBy: 'grace',
    });
  });

  it('names the lock of a workflow locked over the limits', async () => {
    const { services } = await setUp();
    const total = catalog.free.limits.workflows ?? 0;
    for (let i = 0; i < total + 2; i++)
      await services.directory.putWorkflow(`p${i}`, {
        workspace: { kind: 'personal', userId: 'alice' },
        nodeCount: 1,
        enforce: false,
      });
    const personal = { kind: 'personal', userId: 'alice' } as const;
    const { locked } = await services.summaries.forWorkspace('alice', personal, 'alice');
    const lockedId = locked.workflows[0]?.id;
    if (lockedId === undefined) throw new Error('a workflow should be locked');
    const keptId = ['p0', 'p1', 'p2'].find((id) => !locked.workflows.some((w) => w.id === id));
    const { answer, step } = await explain(services, {
      subject: { workflowId: lockedId },
      feature: 'executions',
    });
    expect(answer).toMatchObject({ allowed: false, reason: 'resource_locked' });
    expect(step('owner')).toMatchObject({
      subject: { workflowId: lockedId },
      owner: 'alice',
      mapping: 'read',
    });
    expect(step('lock')).toEqual({ step: 'lock', workflowId: lockedId, locked: true, applies: true });
    expect(step('usage')).toMatchObject({ counted: 'not_counted', used: null });
    const kept = await explain(services, { subject: { workflowId: keptId }, feature: 'executions' });
    expect(kept.step('lock')).toMatchObject({ locked: false });
    expect(kept.answer.allowed).toBe(true);
  });

  it('computes nothing without explain, and explain costs no storage call', async () => {
    const { services, log } = await setUp();
    await services.directory.putWorkflow('wf1', { workspace: org, nodeCount: 2 });
    const request: CheckRequest = { subject: { workflowId: 'wf1' }, feature: 'executions' };
    await services.entitlements.check(request);
    log.reset();
    const plain = await services.entitlements.check(request);
    const plainCalls = log.calls.map((c) => `${c.table}.${c.method}`);
    expect(plain).not.toHaveProperty('explain');
    log.reset();
    const explained = await services.entitlements.check({ ...request, explain: true });
    expect(log.calls.map((c) => `${c.table}.${c.method}`)).toEqual(plainCalls);
    const { explain: trace, ...decision } = explained;
    expect(trace?.steps.length).toBeGreaterThan(0);
    expect(decision).toEqual(plain);
  });

  it('names an active enterprise contract as the source, over a self-serve subscription', async () => {
    const { services } = await setUp();
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'active' });
    const { contract } = await services.contracts.set({
      ownerId: 'alice',
      terms: {
        plan: 'enterprise',
        limits: { workflows_per_org: 300 },
        flags: {},
        seats: 12,
        startsAt: '2026-11-01T00:00:00.000Z',
        endsAt: '2027-11-01T00:00:00.000Z',
        billing: 'manual',
      },
      actor: 'ops',
      reason: 'Order form',
      requestId: 'req-1',
    });
    const traced = await explain(services, { subject: { orgId: 'acme' }, feature: 'workflows_per_org' });
    expect(traced.step('plan')).toMatchObject({ plan: 'enterprise', subscribedPlan: null, status: 'active' });
    expect(traced.step('limit')).toMatchObject({
      limit: 300,
      source: 'contract',
      planLimit: 300,
      override: null,
      contract: { id: contract.id, limit: 300 },
    });
    const flag = await explain(services, { subject: { orgId: 'acme' }, feature: 'white_label' });
    expect(flag.step('flag')).toMatchObject({ enabled: true, source: 'contract' });
  });
});
