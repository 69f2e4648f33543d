import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GLOBAL_AUDIT_PARTITION } from '../../src/billing/audit/entry.js';
import { COHORTS_ROW } from '../../src/billing/ops/cohorts.js';
import { type ApiResponse, startTestHost, type TestHost, token } from '../support/harness.js';
import { manualClock } from '../support/memory.js';

/**
 * Operator settings over HTTP (issue 10): per-owner overrides, owner and cohort enforcement, and the
 * monitor report, with admin tokens only, on the local host over Azurite. The business clock is the
 * test's, so overrides expire when the test moves it.
 */
describe('ops: overrides, enforcement cohorts and the monitor report', () => {
  const T0 = '2026-11-15T12:00:00.000Z';
  const at = (hours: number) => new Date(Date.parse(T0) + hours * 3_600_000).toISOString();
  const clock = manualClock(T0);
  let host: TestHost;
  let service: string;
  let admin: string;

  const ok = (response: ApiResponse, status = 200) => {
    expect(response.status, response.text).toBe(status);
    return response.body as Record<string, unknown>;
  };
  const putWorkflows = async (ownerId: string, count: number, from = 0) => {
    for (let i = from; i < from + count; i++) {
      const put = await host.call(
        'PUT',
        `/api/directory/workflows/${ownerId}-wf${String(i).padStart(2, '0')}`,
        {
          token: service,
          body: { workspace: { userId: ownerId }, nodeCount: 1, enforce: false },
        },
      );
      expect(put.status, put.text).toBe(201);
    }
  };
  const check = (ownerId: string, feature = 'workflows') =>
    host.call('POST', '/api/entitlements/check', {
      token: service,
      body: { subject: { userId: ownerId }, feature, explain: true },
    });
  const ops = (method: string, path: string, body?: unknown) =>
    host.call(method, `/api/ops${path}`, { token: admin, ...(body === undefined ? {} : { body }) });

  beforeAll(async () => {
    host = await startTestHost({ clock, stripe: false, worker: false });
    service = await host.serviceToken();
    admin = await token({ sub: 'ops_1', roles: ['admin'] });
  }, 60_000);
  afterAll(async () => {
    await host?.close();
  });

  it('refuses user and service tokens on every ops endpoint with 403', async () => {
    const user = await token({ sub: 'someone' });
    const endpoints: Array<[string, string, unknown]> = [
      ['GET', '/api/ops/owners/x1/overrides', undefined],
      ['PUT', '/api/ops/owners/x1/overrides', { limits: { workflows: 1 }, reason: 'r' }],
      ['DELETE', '/api/ops/owners/x1/overrides', { reason: 'r' }],
      ['GET', '/api/ops/owners/x1/enforcement', undefined],
      ['PUT', '/api/ops/owners/x1/enforcement', { mode: 'off', reason: 'r' }],
      ['DELETE', '/api/ops/owners/x1/enforcement', { reason: 'r' }],
      ['GET', '/api/ops/enforcement/cohorts', undefined],
      ['PUT', '/api/ops/enforcement/cohorts', { rules: [], reason: 'r' }],
      ['GET', '/api/ops/monitor', undefined],
    ];
    for (const [method, path, body] of endpoints) {
      for (const bearer of [user, service]) {
        const response = await host.call(method, path, {
          token: bearer,
          ...(body === undefined ? {} : { body }),
        });
        expect(response.status, `${method} ${path}: ${response.text}`).toBe(403);
        expect(response.headers.get('content-type')).toContain('application/problem+json');
        expect(response.body).toMatchObject({ code: 'admin_role_required' });
      }
    }
    expect(await host.services.tables.billing.list('x1')).toEqual([]);
  });

  it('answers bad input with 400 problem+json and writes nothing', async () => {
    const bad: Array<[string, string, unknown, string]> = [
      ['PUT', '/owners/x2/overrides', { limits: { workflowz: 3 }, reason: 'typo' }, 'invalid_body'],
      ['PUT', '/owners/x2/overrides', { flags: { ai_nodes: 'yes' }, reason: 'r' }, 'invalid_body'],
      ['PUT', '/owners/x2/overrides', { limits: { workflows: 3 } }, 'invalid_body'],
      ['PUT', '/owners/x2/overrides', { limits: {}, reason: 'nothing' }, 'invalid_body'],
      ['PUT', '/owners/x2/overrides', { limits: { workflows: 3 }, reason: 'x'.repeat(501) }, 'invalid_body'],
      [
        'PUT',
        '/owners/x2/overrides',
        { limits: { seats: 3 }, expiresAt: T0, reason: 'past' },
        'invalid_override',
      ],
      ['DELETE', '/owners/x2/overrides', {}, 'invalid_body'],
      ['PUT', '/owners/x2/enforcement', { mode: 'strict', reason: 'r' }, 'invalid_body'],
      [
        'PUT',
        '/owners/x2/enforcement',
        { mode: 'off', features: { teleport: 'off' }, reason: 'r' },
        'invalid_body',
      ],
      ['PUT', '/owners/bad%7Cid/overrides', { limits: { seats: 3 }, reason: 'r' }, 'invalid_id'],
      [
        'PUT',
        '/enforcement/cohorts',
        { rules: [{ mode: 'enforce', createdFrom: 'yesterday' }], reason: 'r' },
        'invalid_body',
      ],
      [
        'PUT',
        '/enforcement/cohorts',
        { rules: [{ mode: 'enforce', createdFrom: at(2), createdBefore: at(1) }], reason: 'r' },
        'invalid_body',
      ],
      ['GET', '/monitor?feature=teleport', undefined, 'invalid_query'],
      ['GET', `/monitor?from=${at(1)}&to=${at(0)}`, undefined, 'invalid_query'],
    ];
    for (const [method, path, body, code] of bad) {
      const response = await ops(method, path, body);
      expect(response.status, `${method} ${path}: ${response.text}`).toBe(400);
      expect(response.headers.get('content-type')).toContain('application/problem+json');
      expect(response.body, `${method} ${path}`).toMatchObject({ code });
    }
    expect(await host.services.tables.billing.list('x2')).toEqual([]);
    expect(await host.services.tables.billing.get(GLOBAL_AUDIT_PARTITION, COHORTS_ROW)).toBeUndefined();
    expect(await host.services.tables.billing.list(GLOBAL_AUDIT_PARTITION)).toEqual([]);
  });

  it('an override changes a check at once, shows in the summary, and expires on its own', async () => {
    await putWorkflows('e-alice', 10);
    expect(ok(await check('e-alice'))).toMatchObject({ allowed: false, limit: 10, source: 'plan' });
    expect((await ops('GET', '/owners/e-alice/overrides')).status).toBe(404);

    const put = ok(
      await ops('PUT', '/owners/e-alice/overrides', {
        limits: { workflows: 12 },
        flags: { ai_nodes: true },
        expiresAt: at(1),
        reason: 'ticket 4711: room to migrate',
      }),
      201,
    );
    expect(put).toMatchObject({ ownerId: 'e-alice', limits: { workflows: 12 }, updatedBy: 'ops_1' });
    const raised = ok(await check('e-alice'));
    expect(raised).toMatchObject({ allowed: true, limit: 12, remaining: 2, source: 'override' });
    expect(raised.version).toBe(put.version);
    expect(ok(await check('e-alice', 'ai_nodes'))).toMatchObject({ allowed: true, source: 'override' });
    const summary = ok(
      await host.call('GET', '/api/billing/summary', { token: await token({ sub: 'e-alice' }) }),
    );
    expect(summary).toMatchObject({
      limits: { workflows: 12 },
      sources: { workflows: 'override', ai_nodes: 'override', seats: 'plan' },
      overridesExpireAt: at(1),
    });
    expect(ok(await ops('GET', '/owners/e-alice/overrides'))).toMatchObject({ expiresAt: at(1) });
    // The same PUT again (a retry after a lost answer) changes nothing and audits nothing more.
    ok(
      await ops('PUT', '/owners/e-alice/overrides', {
        limits: { workflows: 12 },
        flags: { ai_nodes: true },
        expiresAt: at(1),
        reason: 'ticket 4711: room to migrate',
      }),
    );
    const audits = await host.services.tables.billing.list('e-alice', { prefix: 'audit|' });
    expect(audits).toHaveLength(1);
    expect(audits[0]?.props).toMatchObject({
      kind: 'override_set',
      actorKind: 'admin',
      actor: 'ops_1',
      causeKind: 'admin',
      reason: 'ticket 4711: room to migrate',
      revertible: 'override',
    });

    clock.set(at(1));
    const lapsed = ok(await check('e-alice'));
    expect(lapsed).toMatchObject({ allowed: false, limit: 10, source: 'plan' });
    expect(ok(await check('e-alice', 'ai_nodes'))).toMatchObject({ allowed: false, source: 'plan' });
  });

  it('a raised workflow limit lowered again locks the extra workflows, never deletes them', async () => {
    const bob = await token({ sub: 'e-bob' });
    ok(await ops('PUT', '/owners/e-bob/overrides', { limits: { workflows: 12 }, reason: 'pilot' }), 201);
    await putWorkflows('e-bob', 12);
    expect(ok(await host.call('GET', '/api/billing/locks', { token: bob }))).toMatchObject({
      locked: { workflows: [] },
    });
    const removed = await ops('DELETE', '/owners/e-bob/overrides', { reason: 'pilot over' });
    expect(removed.status, removed.text).toBe(204);
    expect((await ops('DELETE', '/owners/e-bob/overrides', { reason: 'again' })).status).toBe(204);
    const locks = ok(await host.call('GET', '/api/billing/locks', { token: bob })) as {
      locked: { workflows: Array<{ id: string; limit: string }> };
    };
    expect(locks.locked.workflows.map((w) => [w.id, w.limit])).toEqual([
      ['e-bob-wf10', 'workflows'],
      ['e-bob-wf11', 'workflows'],
    ]);
    const summary = ok(await host.call('GET', '/api/billing/summary', { token: bob }));
    expect(summary).toMatchObject({ allocations: { workflows: { used: 12, limit: 10 } } });
    const run = ok(
      await host.call('POST', '/api/entitlements/check', {
        token: service,
        body: { subject: { workflowId: 'e-bob-wf11' }, feature: 'executions' },
      }),
    );
    expect(run).toMatchObject({ allowed: false, reason: 'resource_locked' });
  });

  it('cohort rules gate new owners and monitor old ones, visible in /api/ops/monitor', async () => {
    const cutoff = at(3);
    clock.set(at(2));
    await putWorkflows('e-old', 10);
    clock.set(at(4));
    await putWorkflows('e-new', 10);
    expect(ok(await ops('GET', '/enforcement/cohorts'))).toEqual({
      rules: [],
      updatedAt: null,
      updatedBy: null,
    });
    const set = ok(
      await ops('PUT', '/enforcement/cohorts', {
        rules: [
          { createdBefore: cutoff, mode: 'monitor' },
          { createdFrom: cutoff, mode: 'enforce' },
        ],
        reason: 'roll out workflow limits to new owners first',
      }),
    );
    expect(set).toMatchObject({ updatedBy: 'ops_1', rules: [{ mode: 'monitor' }, { mode: 'enforce' }] });

    const refused = await host.call('PUT', '/api/directory/workflows/e-new-wf10', {
      token: service,
      body: { workspace: { userId: 'e-new' }, nodeCount: 1 },
    });
    expect(refused.status, refused.text).toBe(402);
    expect(refused.body).toMatchObject({ code: 'limit_exceeded', feature: 'workflows' });
    const fresh = ok(await check('e-new'));
    expect(fresh).toMatchObject({ allowed: false, enforcement: 'enforce' });

    clock.set(at(5));
    const allowed = await host.call('PUT', '/api/directory/workflows/e-old-wf10', {
      token: service,
      body: { workspace: { userId: 'e-old' }, nodeCount: 1 },
    });
    expect(allowed.status, allowed.text).toBe(201);
    const old = ok(await check('e-old')) as { explain: { steps: Array<{ step: string }> } };
    expect(old).toMatchObject({ allowed: true, reason: 'limit_exceeded', enforcement: 'monitor' });
    expect(old.explain.steps.find((s) => s.step === 'enforcement')).toMatchObject({
      source: 'cohort',
      cohortRule: 0,
      softenedBy: 'monitor',
    });

    const report = ok(
      await ops(
        'GET',
        `/monitor?feature=workflows&from=${encodeURIComponent(at(0))}&to=${encodeURIComponent(at(6))}`,
      ),
    );
    expect(report).toMatchObject({ feature: 'workflows', truncated: false });
    expect(report.entries).toEqual([
      expect.objectContaining({
        ownerId: 'e-old',
        feature: 'workflows',
        count: 2,
        monitor: 2,
        grace: 0,
        reasons: { limit_exceeded: 2 },
      }),
    ]);

    // The owner's own setting comes first.
    ok(await ops('PUT', '/owners/e-old/enforcement', { mode: 'enforce', reason: 'caught up' }), 201);
    expect(ok(await ops('GET', '/owners/e-old/enforcement'))).toMatchObject({
      mode: 'enforce',
      features: {},
    });
    expect(ok(await check('e-old'))).toMatchObject({ allowed: false, enforcement: 'enforce' });
    expect((await ops('DELETE', '/owners/e-old/enforcement', { reason: 'back to the cohort' })).status).toBe(
      204,
    );
    expect(ok(await check('e-old'))).toMatchObject({ allowed: true, enforcement: 'monitor' });

    const global = await host.services.tables.billing.list(GLOBAL_AUDIT_PARTITION, { prefix: 'audit|' });
    expect(global.map((row) => row.props)).toEqual([
      expect.objectContaining({
        kind: 'cohort_enforcement_set',
        revertible: 'cohort_enforcement',
        actor: 'ops_1',
      }),
    ]);
    ok(await ops('PUT', '/enforcement/cohorts', { rules: [], reason: 'rollout done' }));
  });
});
