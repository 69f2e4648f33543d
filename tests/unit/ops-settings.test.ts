import { describe, expect, it } from 'vitest';
import { capabilitiesFor, lockSetInForce } from '../../src/billing/access/decide.js';
import type { ExplainStep } from '../../src/billing/access/explain.js';
import { GLOBAL_AUDIT_PARTITION } from '../../src/billing/audit/entry.js';
import { catalog } from '../../src/billing/catalog.js';
import type { Subject } from '../../src/billing/entitlements.js';
import { BillingError } from '../../src/billing/errors.js';
import { UnrevertibleBeforeError } from '../../src/billing/ops/admin-change.js';
import { createCohortSettings } from '../../src/billing/ops/cohorts.js';
import { VERSION_ROW } from '../../src/billing/owner/keys.js';
import type { Services } from '../../src/composition.js';
import { manualClock } from '../support/memory.js';
import { memoryTables, servicesOver, type Tables } from '../support/stores.js';
import { faultyTables, InjectedFailure } from '../support/tables.js';

/**
 * Operator settings (issue 10): per-owner overrides on top of the plan, per-owner and cohort enforcement
 * in their resolution order, their audit rows, and the revert handlers, on the in-memory twin.
 */

const T0 = '2026-11-15T12:00:00.000Z';
const later = (iso: string, ms: number) => new Date(Date.parse(iso) + ms).toISOString();
const HOUR = 3_600_000;
const personal = (userId: string) => ({ kind: 'personal', userId }) as const;
const admin = (reason = 'support ticket 42', requestId = `req-${Math.random().toString(36).slice(2)}`) => ({
  actor: 'ops_1',
  requestId,
  reason,
});

async function setUp(env: Record<string, string> = {}) {
  const tables = memoryTables();
  const clock = manualClock(T0);
  const services = servicesOver(tables, { env, clock });
  expect((await services.migration.run()).complete).toBe(true);
  return { tables, clock, services };
}

async function workflows(services: Services, ownerId: string, count: number, from = 0) {
  for (let i = from; i < from + count; i++) {
    const put = await services.directory.putWorkflow(`${ownerId}-wf${String(i).padStart(2, '0')}`, {
      workspace: personal(ownerId),
      nodeCount: 1,
      enforce: false,
    });
    expect(put.kind).toBe('created');
  }
}

const check = (services: Services, subject: Subject, feature: 'workflows' | 'ai_nodes', explain = false) =>
  services.entitlements.check({ subject, feature, explain });

function stepOf<K extends ExplainStep['step']>(steps: readonly ExplainStep[] | undefined, kind: K) {
  const found = steps?.find((s): s is Extract<ExplainStep, { step: K }> => s.step === kind);
  if (!found) throw new Error(`no ${kind} step`);
  return found;
}

const audits = async (tables: Tables, partition: string): Promise<Array<Record<string, unknown>>> =>
  (await tables.billing.list(partition, { prefix: 'audit|' })).map((row) => {
    const before: unknown = JSON.parse(String(row.props.before));
    const after: unknown = JSON.parse(String(row.props.after));
    return { ...row.props, before, after };
  });

describe('per-owner overrides', () => {
  it('apply at once in checks, the trace and the summary, and lapse by themselves at expiresAt', async () => {
    const { services, clock } = await setUp();
    await workflows(services, 'alice', 10);
    expect(await check(services, { userId: 'alice' }, 'workflows')).toMatchObject({
      allowed: false,
      limit: 10,
      source: 'plan',
    });
    const before = (await services.owners.read('alice')).version.value;
    const set = await services.overrides.set(
      'alice',
      { limits: { workflows: 20 }, flags: { ai_nodes: true }, expiresAt: later(T0, HOUR) },
      admin(),
    );
    expect(set).toMatchObject({ outcome: 'created', version: before + 1 });

    const raised = await check(services, { userId: 'alice' }, 'workflows', true);
    expect(raised).toMatchObject({ allowed: true, limit: 20, remaining: 10, source: 'override' });
    expect(stepOf(raised.explain?.steps, 'limit')).toMatchObject({
      source: 'override',
      limit: 20,
      planLimit: 20,
      override: { limit: 20, expiresAt: later(T0, HOUR) },
    });
    expect(await check(services, { userId: 'alice' }, 'ai_nodes')).toMatchObject({
      allowed: true,
      source: 'override',
    });
    const summary = await services.summaries.forWorkspace('alice', personal('alice'), 'alice');
    expect(summary.limits.workflows).toBe(20);
    expect(summary.sources).toMatchObject({
      workflows: 'override',
      ai_nodes: 'override',
      executions: 'plan',
    });
    expect(summary.overridesExpireAt).toBe(later(T0, HOUR));

    // A directory create is decided with the override too.
    await expect(
      services.directory.putWorkflow('alice-extra', { workspace: personal('alice'), nodeCount: 1 }),
    ).resolves.toMatchObject({ kind: 'created' });

    clock.set(later(T0, HOUR));
    const lapsed = await check(services, { userId: 'alice' }, 'workflows', true);
    expect(lapsed).toMatchObject({ allowed: false, limit: 10, source: 'plan' });
    expect(stepOf(lapsed.explain?.steps, 'limit')).toMatchObject({ source: 'plan', override: null });
    // Still stored (the GET shows it), no longer applied.
    expect(await services.overrides.get('alice')).toMatchObject({ value: { expiresAt: later(T0, HOUR) } });
  });

  it('apply to consumption, also from a snapshot a process kept, and lapse there too', async () => {
    const { services, clock } = await setUp();
    await services.overrides.set(
      'hank',
      { limits: { executions: 3, workflows: 12 }, flags: {}, expiresAt: later(T0, HOUR) },
      admin(),
    );
    await workflows(services, 'hank', 12);
    const consume = (key: string, workflowId = 'hank-wf11') =>
      services.usage.consume({
        subject: { workflowId },
        meter: 'executions',
        quantity: 1,
        idempotencyKey: key,
      });
    for (const key of ['k1', 'k2', 'k3']) expect((await consume(key)).kind).toBe('consumed');
    expect(await consume('k4')).toMatchObject({ kind: 'denied', code: 'limit_exceeded' });
    // Metering decides the next batch from the snapshot its own transaction left, whose lock set was
    // computed for the raised limit: the lapse makes it read afresh (repairing the lock set) instead.
    clock.set(later(T0, HOUR));
    await expect(consume('k5')).rejects.toMatchObject({ code: 'resource_locked' });
    const kept = await consume('k6', 'hank-wf00');
    expect(kept.kind).toBe('consumed');
    expect(kept.outcome).toMatchObject({ allowance: catalog.free.limits.executions });
  });

  it('a raised workflow limit lowered again by expiry locks items, never deletes them', async () => {
    const { services, clock } = await setUp();
    await services.overrides.set(
      'bob',
      { limits: { workflows: 14 }, flags: {}, expiresAt: later(T0, HOUR) },
      admin(),
    );
    await workflows(services, 'bob', 13);
    const raised = await services.owners.read('bob');
    expect(raised.allocation.workflows).toBe(13);

    clock.set(later(T0, 2 * HOUR));
    const versionBefore = raised.version.value;
    // The read finds the lock set computed for other limits and repairs it (one write) before any decision.
    const lowered = await services.owners.read('bob');
    expect(lowered.version.value).toBe(versionBefore + 1);
    const caps = capabilitiesFor(lowered, catalog);
    expect(lockSetInForce(lowered, caps)).not.toBe('stale');
    const report = await services.locks.report(lowered);
    expect(report.workflows.map((w) => w.id)).toEqual(['bob-wf10', 'bob-wf11', 'bob-wf12']);
    expect((await services.directory.items('bob')).workflows).toHaveLength(13);
    expect((await services.directory.counts('bob')).workflows).toBe(13);
    // A locked workflow's runs are refused; a kept one's are not.
    expect(
      await services.entitlements.check({ subject: { workflowId: 'bob-wf12' }, feature: 'executions' }),
    ).toMatchObject({ allowed: false, reason: 'resource_locked' });
    expect(
      await services.entitlements.check({ subject: { workflowId: 'bob-wf00' }, feature: 'executions' }),
    ).toMatchObject({ allowed: true });
  });

  it('DELETE moves the lock set in its own transaction, and PUT of the same value writes nothing', async () => {
    const { services, tables } = await setUp();
    await services.overrides.set('carol', { limits: { workflows: 12 }, flags: {}, expiresAt: null }, admin());
    await workflows(services, 'carol', 12);
    const again = await services.overrides.set(
      'carol',
      { limits: { workflows: 12 }, flags: {}, expiresAt: null },
      admin('retry'),
    );
    expect(again.outcome).toBe('unchanged');
    expect(await services.overrides.clear('carol', admin('ticket closed', 'req-clear'))).toBe(true);
    expect(await services.overrides.clear('carol', admin('again'))).toBe(false);
    const snapshot = await services.owners.read('carol');
    // Written with the change: the stored set already matches the plan's limits.
    expect(snapshot.allocation.locks?.basis).toBe('10/5/10');
    expect((await services.locks.report(snapshot)).workflows).toHaveLength(2);
    const rows = await audits(tables, 'carol');
    expect(rows).toHaveLength(2);
    expect(rows.find((row) => row.kind === 'override_removed')).toMatchObject({
      kind: 'override_removed',
      actorKind: 'admin',
      actor: 'ops_1',
      causeKind: 'admin',
      causeId: 'req-clear',
      reason: 'ticket closed',
      revertible: 'override',
      ownerId: 'carol',
      before: { limits: { workflows: 12 }, flags: {}, expiresAt: null },
      after: null,
    });
  });

  it('refuses an expiry that is not in the future, writing nothing', async () => {
    const { services, tables } = await setUp();
    await expect(
      services.overrides.set('dave', { limits: { seats: 3 }, flags: {}, expiresAt: T0 }, admin()),
    ).rejects.toMatchObject({ code: 'invalid_override' });
    expect(await tables.billing.list('dave')).toEqual([]);
  });

  it('the revert handler applies the audited before as a new admin change', async () => {
    const { services, tables } = await setUp();
    // One instant on this clock: audit keys then sort by request id.
    await services.overrides.set(
      'erin',
      { limits: { workflows: 30 }, flags: {}, expiresAt: null },
      admin('first', 'req-a'),
    );
    await services.overrides.set(
      'erin',
      { limits: { workflows: 40 }, flags: {}, expiresAt: null },
      admin('second', 'req-b'),
    );
    const [first, second] = await audits(tables, 'erin');
    const handler = services.overrides.revertHandler;
    expect(handler.kind).toBe('override');
    await handler.revert({
      ownerId: 'erin',
      before: second?.before,
      actor: 'ops_2',
      reason: 'undo the raise',
      revertOf: 'audit|second',
      requestId: 'req-revert-1',
    });
    expect((await services.overrides.get('erin'))?.value.limits).toEqual({ workflows: 30 });
    await handler.revert({
      ownerId: 'erin',
      before: first?.before,
      actor: 'ops_2',
      reason: 'undo the first',
      revertOf: 'audit|first',
      requestId: 'req-revert-2',
    });
    expect(await services.overrides.get('erin')).toBeUndefined();
    const rows = await audits(tables, 'erin');
    expect(rows.find((row) => row.revertOf === 'audit|second')).toMatchObject({
      kind: 'override_set',
      actor: 'ops_2',
      causeType: 'revert',
    });
    expect(rows.find((row) => row.revertOf === 'audit|first')).toMatchObject({
      kind: 'override_removed',
      reason: 'undo the first',
    });
    await expect(
      handler.revert({
        ownerId: 'erin',
        before: { limits: { no_such_limit: 1 } },
        actor: 'ops_2',
        reason: 'x',
        revertOf: 'audit|x',
        requestId: 'req-x',
      }),
    ).rejects.toBeInstanceOf(UnrevertibleBeforeError);
  });
});

describe('enforcement: per owner, per cohort, per feature, default', () => {
  const cutoff = later(T0, 24 * HOUR);

  it('cohort rules gate new owners and monitor old ones; the owner setting comes first', async () => {
    const { services, clock, tables } = await setUp({ ENFORCEMENT_OVERRIDES: 'ai_nodes=off' });
    await workflows(services, 'old', 10);
    clock.set(later(cutoff, HOUR));
    await workflows(services, 'new', 10);
    // An owner whose state predates the creation record: counts as older than any instant.
    await tables.billing.upsert('legacy', VERSION_ROW, { version: 4 });
    expect((await services.owners.read('new')).version.createdAt).toBe(later(cutoff, HOUR));
    expect((await services.owners.read('old')).version.createdAt).toBe(T0);

    await services.cohorts.set(
      [
        { createdBefore: cutoff, mode: 'monitor' },
        { createdFrom: cutoff, mode: 'enforce', features: ['workflows', 'executions'] },
      ],
      admin('roll out workflow limits'),
    );
    const old = await check(services, { userId: 'old' }, 'workflows', true);
    expect(old).toMatchObject({ allowed: true, reason: 'limit_exceeded', enforcement: 'monitor' });
    expect(stepOf(old.explain?.steps, 'enforcement')).toMatchObject({
      configured: 'monitor',
      source: 'cohort',
      cohortRule: 0,
      softenedBy: 'monitor',
    });
    expect((await tables.billing.list('old', { prefix: 'monitor|' })).length).toBe(1);
    const fresh = await check(services, { userId: 'new' }, 'workflows', true);
    expect(fresh).toMatchObject({ allowed: false, reason: 'limit_exceeded', enforcement: 'enforce' });
    expect(stepOf(fresh.explain?.steps, 'enforcement')).toMatchObject({ source: 'cohort', cohortRule: 1 });
    // No rule names ai_nodes for new owners: the feature's configured mode decides.
    const flag = await check(services, { userId: 'new' }, 'ai_nodes', true);
    expect(stepOf(flag.explain?.steps, 'enforcement')).toMatchObject({
      configured: 'off',
      source: 'feature',
    });
    expect(await check(services, { userId: 'legacy' }, 'ai_nodes', true)).toMatchObject({
      enforcement: 'monitor',
    });
    // The directory decides with the same rules: a new owner's 11th workflow is refused.
    await expect(
      services.directory.putWorkflow('new-11', { workspace: personal('new'), nodeCount: 1 }),
    ).rejects.toMatchObject({ code: 'limit_exceeded' });
    await expect(
      services.directory.putWorkflow('old-11', { workspace: personal('old'), nodeCount: 1 }),
    ).resolves.toMatchObject({ kind: 'created' });

    await services.ownerEnforcement.set(
      'old',
      { mode: 'enforce', features: { ai_nodes: 'monitor' } },
      admin(),
    );
    const owned = await check(services, { userId: 'old' }, 'workflows', true);
    expect(owned).toMatchObject({ allowed: false, enforcement: 'enforce' });
    expect(stepOf(owned.explain?.steps, 'enforcement')).toMatchObject({ source: 'owner', cohortRule: null });
    expect(await check(services, { userId: 'old' }, 'ai_nodes')).toMatchObject({ enforcement: 'monitor' });

    const global = await audits(tables, GLOBAL_AUDIT_PARTITION);
    expect(global).toMatchObject([
      {
        kind: 'cohort_enforcement_set',
        revertible: 'cohort_enforcement',
        actorKind: 'admin',
        reason: 'roll out workflow limits',
        before: null,
        after: { rules: [{ createdBefore: cutoff, mode: 'monitor' }, { createdFrom: cutoff }] },
      },
    ]);
    expect((await audits(tables, 'old')).find((row) => row.kind === 'enforcement_set')).toMatchObject({
      kind: 'enforcement_set',
      revertible: 'enforcement',
      after: { mode: 'enforce', features: { ai_nodes: 'monitor' } },
    });
  });

  it('another process sees cohort rules within its cache time; the revert handlers restore before', async () => {
    const { services, tables, clock } = await setUp();
    const other = servicesOver(tables, { clock });
    expect((await other.cohorts.current()).cohorts).toEqual([]);
    await services.cohorts.set([{ mode: 'monitor' }], admin('everyone monitored'));
    expect((await services.cohorts.current()).cohorts).toEqual([{ mode: 'monitor' }]);
    // The other process still has its copy (up to 30 s), and reads the stored rules when asked directly.
    expect((await other.cohorts.current()).cohorts).toEqual([]);
    expect((await other.cohorts.read()).rules).toEqual([{ mode: 'monitor' }]);

    const [change] = await audits(tables, GLOBAL_AUDIT_PARTITION);
    await services.cohorts.revertHandler.revert({
      ownerId: undefined,
      before: change?.before,
      actor: 'ops_2',
      reason: 'too early',
      revertOf: 'audit|cohort',
      requestId: 'req-cohort-revert',
    });
    expect((await services.cohorts.read()).rules).toEqual([]);
    expect((await audits(tables, GLOBAL_AUDIT_PARTITION)).find((row) => row.revertOf)).toMatchObject({
      revertOf: 'audit|cohort',
      before: { rules: [{ mode: 'monitor' }] },
      after: { rules: [] },
    });

    await services.ownerEnforcement.set('fay', { mode: 'off', features: {} }, admin());
    const [set] = await audits(tables, 'fay');
    await services.ownerEnforcement.revertHandler.revert({
      ownerId: 'fay',
      before: set?.before,
      actor: 'ops_2',
      reason: 'back',
      revertOf: 'audit|fay',
      requestId: 'req-fay',
    });
    expect(await services.ownerEnforcement.get('fay')).toBeUndefined();
    await expect(
      services.ownerEnforcement.revertHandler.revert({
        ownerId: undefined,
        before: null,
        actor: 'ops_2',
        reason: 'x',
        revertOf: 'audit|x',
        requestId: 'req-x',
      }),
    ).rejects.toBeInstanceOf(BillingError);
  });
});

describe('the cohort rules cache', () => {
  it('refreshes after its time, and a failed read is an error, never "no rules"', async () => {
    const tables = memoryTables();
    const clock = manualClock(T0);
    const base = { defaultMode: 'enforce', overrides: {} } as const;
    const writer = createCohortSettings({ table: tables.billing, base, clock });
    const reader = createCohortSettings({ table: tables.billing, base, clock, ttlMs: 5 });
    expect((await reader.current()).cohorts).toEqual([]);
    await writer.set([{ mode: 'off', features: ['seats'] }], admin());
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect((await reader.current()).cohorts).toEqual([{ mode: 'off', features: ['seats'] }]);

    const broken = faultyTables(tables);
    const failing = createCohortSettings({ table: broken.tables.billing, base, clock });
    broken.faults.failCall(1, 'before');
    await expect(failing.current()).rejects.toBeInstanceOf(InjectedFailure);
    expect((await failing.current()).cohorts).toEqual([{ mode: 'off', features: ['seats'] }]);
  });
});

describe('the monitor report', () => {
  it('lists would-be denials per owner and feature in a window, from the day index', async () => {
    const { services, clock, tables } = await setUp({ ENFORCEMENT_DEFAULT: 'monitor' });
    await workflows(services, 'gus', 10);
    await check(services, { userId: 'gus' }, 'workflows');
    clock.set(later(T0, 25 * HOUR));
    await check(services, { userId: 'gus' }, 'workflows');
    await check(services, { userId: 'gus' }, 'ai_nodes');
    expect(await tables.billing.list('ops|monitor|2026-11-15')).toHaveLength(1);
    const all = await services.monitor.report({ from: new Date(T0), to: new Date(later(T0, 26 * HOUR)) });
    expect(all.entries).toMatchObject([
      { ownerId: 'gus', feature: 'ai_nodes', count: 1, reasons: { feature_not_in_plan: 1 }, monitor: 1 },
      { ownerId: 'gus', feature: 'workflows', count: 2, quantity: 2, reasons: { limit_exceeded: 2 } },
    ]);
    const one = await services.monitor.report({
      feature: 'workflows',
      from: new Date(later(T0, HOUR)),
      to: new Date(later(T0, 26 * HOUR)),
    });
    expect(one.entries).toMatchObject([{ ownerId: 'gus', feature: 'workflows', count: 1 }]);
    await expect(
      services.monitor.report({ from: new Date(T0), to: new Date(later(T0, 40 * 24 * HOUR)) }),
    ).rejects.toMatchObject({ code: 'invalid_query' });
  });
});
