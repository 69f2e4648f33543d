import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { type ApiResponse, startTestHost, type TestHost, token } from '../support/harness.js';

const free = catalog.free.limits;

function expectProblem(response: ApiResponse, status: number, code: string) {
  expect(response.status, response.text).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(response.body).toMatchObject({ status, code, type: `/problems/${code}` });
}

function finite(value: number | null): number {
  if (value === null) throw new Error('the test needs a finite limit');
  return value;
}

describe('HTTP API over the local host', () => {
  let host: TestHost;
  let service: string;

  beforeAll(async () => {
    host = await startTestHost();
    service = await host.serviceToken();
  });
  afterAll(async () => {
    await host?.close();
  });

  const put = (path: string, body: unknown, as = service) =>
    host.call('PUT', `/api/directory/${path}`, { token: as, body });
  const check = (body: unknown, as = service) =>
    host.call('POST', '/api/entitlements/check', { token: as, body });

  it('reports health of storage and queue', async () => {
    const response = await host.call('GET', '/api/health');
    expect(response.status).toBe(200);
    expect(response.body).toMatchObject({
      status: 'ok',
      checks: { storage: { status: 'ok' }, queue: { status: 'ok' } },
    });
  });

  it('serves the public catalog without Stripe identifiers', async () => {
    const response = await host.call('GET', '/api/plans');
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toMatch(/public/);
    const body = response.body as { plans: Array<{ name: string; limits: unknown; flags: unknown }> };
    expect(body.plans.map((p) => p.name)).toEqual(['free', 'pro', 'team', 'enterprise']);
    expect(body.plans[1]).toMatchObject({ limits: catalog.pro.limits, flags: catalog.pro.flags });
    expect(response.text).not.toMatch(/lookupKey|_monthly|price_/);
  });

  it('denies one more workflow in a full free organization, and allows it after a delete', async () => {
    expect((await put('orgs/o-full', { creatorId: 'u-full', name: 'Full Ltd' })).status).toBe(201);
    expect((await put('orgs/o-full', { creatorId: 'u-full', name: 'Full Ltd' })).status).toBe(200);
    const perOrg = finite(free.workflows_per_org);
    for (let i = 0; i < perOrg; i++) {
      expect(
        (await put(`workflows/full-${i}`, { workspace: { orgId: 'o-full' }, nodeCount: 3 })).status,
      ).toBe(201);
    }
    const denied = await check({ subject: { orgId: 'o-full' }, feature: 'workflows_per_org' });
    expect(denied.status).toBe(200);
    expect(denied.body).toMatchObject({
      allowed: false,
      reason: 'limit_exceeded',
      limit: perOrg,
      used: perOrg,
      remaining: 0,
      enforcement: 'enforce',
      owner: 'u-full',
      plan: 'free',
    });
    // The create is the claim on the slot: refused with what is full, and nothing is written.
    const refused = await put('workflows/full-extra', { workspace: { orgId: 'o-full' }, nodeCount: 3 });
    expect(refused.status).toBe(402);
    expect(refused.headers.get('content-type')).toMatch(/problem\+json/);
    expect(refused.body).toMatchObject({
      code: 'limit_exceeded',
      feature: 'workflows_per_org',
      limit: perOrg,
      used: perOrg,
      remaining: 0,
    });
    expect(await host.services.directory.getWorkflow('full-extra')).toBeUndefined();
    // A backfill records it anyway (it is then locked), and a DELETE takes it away again.
    const backfilled = await put('workflows/full-extra', {
      workspace: { orgId: 'o-full' },
      nodeCount: 3,
      enforce: false,
    });
    expect(backfilled.status).toBe(201);
    expect(
      (await host.call('DELETE', '/api/directory/workflows/full-extra', { token: service })).status,
    ).toBe(204);
    expect((await host.call('DELETE', '/api/directory/workflows/full-0', { token: service })).status).toBe(
      204,
    );
    expect((await host.call('DELETE', '/api/directory/workflows/full-0', { token: service })).status).toBe(
      204,
    );
    const allowed = await check({ subject: { orgId: 'o-full' }, feature: 'workflows_per_org' });
    expect(allowed.body).toMatchObject({
      allowed: true,
      reason: 'within_limit',
      used: perOrg - 1,
      remaining: 1,
    });
  });

  it("counts an organization's workflows against its creator's total, with the personal ones, and runs resolve to the same owner", async () => {
    await put('orgs/o-sum', { creatorId: 'u-sum' });
    await put('workflows/sum-org-1', { workspace: { orgId: 'o-sum' }, nodeCount: 2 });
    await put('workflows/sum-org-2', { workspace: { orgId: 'o-sum' }, nodeCount: 2 });
    await put('workflows/sum-personal-1', { workspace: { userId: 'u-sum' }, nodeCount: 2 });
    const total = await check({ subject: { userId: 'u-sum' }, feature: 'workflows' });
    expect(total.body).toMatchObject({ owner: 'u-sum', used: 3, limit: free.workflows });
    const viaOrg = await check({ subject: { orgId: 'o-sum' }, feature: 'workflows' });
    expect(viaOrg.body).toMatchObject({ owner: 'u-sum', used: 3 });
    const run = await check({ subject: { workflowId: 'sum-org-1' }, feature: 'executions' });
    expect(run.body).toMatchObject({ owner: 'u-sum', allowed: true });

    const summary = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-sum', org: 'o-sum' }),
    });
    expect(summary.status).toBe(200);
    expect(summary.body).toMatchObject({
      owner: 'u-sum',
      workspace: { kind: 'org', orgId: 'o-sum' },
      plan: { name: 'free' },
      status: 'none',
      accessLevel: 'free',
      limits: free,
      allocations: {
        workflows: { used: 3, limit: free.workflows },
        workflowsPerOrg: { orgs: [{ orgId: 'o-sum', used: 2 }] },
        seats: { used: 1 },
      },
      usage: { executions: { used: 0, limit: free.executions } },
    });
  });

  it('versions every check, consume and summary, and answers 409 for a minVersion not reached', async () => {
    expect((await put('orgs/o-ver', { creatorId: 'u-ver', name: 'Versioned' })).status).toBe(201);
    const first = await check({ subject: { orgId: 'o-ver' }, feature: 'workflows' });
    const { version } = first.body as { version: number; asOf: string };
    expect(first.body).toMatchObject({ version: expect.any(Number), asOf: expect.any(String) });
    expect((await put('workflows/ver-1', { workspace: { orgId: 'o-ver' }, nodeCount: 1 })).status).toBe(201);
    const next = await check({ subject: { orgId: 'o-ver' }, feature: 'workflows', minVersion: version + 1 });
    expect(next.body).toMatchObject({ version: version + 1, used: 1 });
    const consumed = await host.call('POST', '/api/usage/consume', {
      token: service,
      body: {
        subject: { orgId: 'o-ver' },
        meter: 'executions',
        idempotencyKey: 'ver-run-1',
        minVersion: version + 1,
      },
    });
    expect(consumed.status, consumed.text).toBe(200);
    expect(consumed.body).toMatchObject({ version: version + 2 });
    const summaryAs = await token({ sub: 'u-ver', org: 'o-ver' });
    const summary = await host.call('GET', `/api/billing/summary?minVersion=${version + 2}`, {
      token: summaryAs,
    });
    expect(summary.status, summary.text).toBe(200);
    expect(summary.body).toMatchObject({ version: version + 2 });

    const future = version + 10;
    const notYet = await check({ subject: { orgId: 'o-ver' }, feature: 'workflows', minVersion: future });
    expectProblem(notYet, 409, 'version_not_reached');
    expect(notYet.body).toMatchObject({ version: version + 2, minVersion: future });
    const notYetConsume = await host.call('POST', '/api/usage/consume', {
      token: service,
      body: {
        subject: { orgId: 'o-ver' },
        meter: 'executions',
        idempotencyKey: 'ver-run-2',
        minVersion: future,
      },
    });
    expectProblem(notYetConsume, 409, 'version_not_reached');
    const notYetSummary = await host.call('GET', `/api/billing/summary?minVersion=${future}`, {
      token: summaryAs,
    });
    expectProblem(notYetSummary, 409, 'version_not_reached');
    const badQuery = await host.call('GET', '/api/billing/summary?minVersion=-1', { token: summaryAs });
    expectProblem(badQuery, 400, 'invalid_query');
  });

  it('explains a check when asked, and only then', async () => {
    expect((await put('orgs/o-why', { creatorId: 'u-why', name: 'Why Ltd' })).status).toBe(201);
    expect((await put('workflows/why-1', { workspace: { orgId: 'o-why' }, nodeCount: 1 })).status).toBe(201);
    const plain = await check({ subject: { workflowId: 'why-1' }, feature: 'executions' });
    expect(plain.status).toBe(200);
    expect(plain.body).not.toHaveProperty('explain');
    const explained = await check({ subject: { workflowId: 'why-1' }, feature: 'executions', explain: true });
    expect(explained.status, explained.text).toBe(200);
    const steps = (explained.body as { explain: { steps: Array<{ step: string }> } }).explain.steps;
    expect(steps.map((s) => s.step)).toEqual([
      'owner',
      'plan',
      'limit',
      'usage',
      'enforcement',
      'lock',
      'decision',
    ]);
    expect(steps[0]).toMatchObject({
      owner: 'u-why',
      mapping: 'read',
      workspace: { kind: 'org', orgId: 'o-why' },
    });
    const flag = await check({ subject: { orgId: 'o-why' }, feature: 'ai_nodes', explain: true });
    expect(flag.status, flag.text).toBe(200);
    expect(flag.body).toMatchObject({
      explain: {
        steps: [
          { step: 'owner', mapping: 'cached' },
          { step: 'plan' },
          { step: 'flag' },
          { step: 'enforcement' },
          { step: 'decision' },
        ],
      },
    });
  });

  it('lets a member read the organization summary, and refuses a user outside the organization', async () => {
    await put('orgs/o-team', { creatorId: 'u-team-owner' });
    await put('orgs/o-team-private', { creatorId: 'u-team-owner', name: 'Private side project' });
    expect(
      (await host.call('PUT', '/api/directory/orgs/o-team/members/u-team-member', { token: service })).status,
    ).toBe(201);
    const asMember = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-team-member', org: 'o-team' }),
    });
    expect(asMember.status).toBe(200);
    expect(asMember.body).toMatchObject({ owner: 'u-team-owner', allocations: { seats: { used: 2 } } });
    // A member sees the owner's totals, but not the owner's other organizations.
    expect(asMember.text).not.toContain('o-team-private');
    const asOwner = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-team-owner' }),
    });
    expect(asOwner.text).toContain('o-team-private');

    const outsider = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-outsider', org: 'o-team' }),
    });
    expectProblem(outsider, 403, 'not_a_member');
    const unknownOrg = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-outsider', org: 'o-ghost' }),
    });
    expectProblem(unknownOrg, 403, 'not_a_member');
    const personal = await host.call('GET', '/api/billing/summary', {
      token: await token({ sub: 'u-outsider' }),
    });
    expect(personal.body).toMatchObject({
      owner: 'u-outsider',
      workspace: { kind: 'personal', userId: 'u-outsider' },
    });
  });

  describe('bad requests answer 4xx problem+json and change nothing', () => {
    const workflowsOf = async (owner: string) =>
      ((await check({ subject: { userId: owner }, feature: 'workflows' })).body as { used: number }).used;

    beforeAll(async () => {
      await put('orgs/o-bad', { creatorId: 'u-bad' });
      await put('workflows/bad-1', { workspace: { orgId: 'o-bad' }, nodeCount: 1 });
    });

    it('malformed JSON', async () => {
      const response = await put('workflows/bad-2', '{"workspace": {"orgId": "o-bad"}, "nodeCount": ');
      expectProblem(response, 400, 'malformed_json');
      expect(await workflowsOf('u-bad')).toBe(1);
    });

    it('unknown fields, naming them', async () => {
      const response = await put('workflows/bad-2', {
        workspace: { orgId: 'o-bad' },
        nodeCount: 1,
        owner: 'u-evil',
      });
      expectProblem(response, 400, 'invalid_body');
      expect(response.body).toMatchObject({
        errors: [{ path: '', message: expect.stringMatching(/owner/) }],
      });
      expect(await workflowsOf('u-bad')).toBe(1);
    });

    it('wrong types and missing fields, each with its path', async () => {
      const response = await put('workflows/bad-2', { workspace: { orgId: 'o-bad' }, nodeCount: 'many' });
      expectProblem(response, 400, 'invalid_body');
      expect(response.body).toMatchObject({ errors: [{ path: 'nodeCount' }] });
      const noSubject = await check({ subject: {}, feature: 'workflows' });
      expectProblem(noSubject, 400, 'invalid_body');
      const badFeature = await check({ subject: { userId: 'u-bad' }, feature: 'teleportation' });
      expectProblem(badFeature, 400, 'invalid_body');
      expect(await workflowsOf('u-bad')).toBe(1);
    });

    it('an empty body, a non-JSON content type, an oversized body', async () => {
      expectProblem(
        await host.call('PUT', '/api/directory/orgs/o-bad', { token: service }),
        415,
        'content_type_not_json',
      );
      expectProblem(
        await host.call('PUT', '/api/directory/orgs/o-bad', {
          token: service,
          body: '',
          headers: { 'content-type': 'application/json' },
        }),
        400,
        'body_required',
      );
      expectProblem(
        await host.call('PUT', '/api/directory/orgs/o-bad', {
          token: service,
          body: 'creatorId=u',
          headers: { 'content-type': 'text/plain' },
        }),
        415,
        'content_type_not_json',
      );
      const huge = { creatorId: 'u-bad', name: 'x'.repeat(200 * 1024) };
      expectProblem(await put('orgs/o-bad', huge), 413, 'body_too_large');
      expect((await host.services.directory.getOrg('o-bad'))?.name).toBe('o-bad');
    });

    it('an invalid id in the path', async () => {
      expectProblem(
        await put('workflows/bad%20id', { workspace: { orgId: 'o-bad' }, nodeCount: 1 }),
        400,
        'invalid_id',
      );
      expect(await workflowsOf('u-bad')).toBe(1);
    });

    it('a missing, malformed, expired or foreign token', async () => {
      const body = { workspace: { orgId: 'o-bad' }, nodeCount: 1 };
      const missing = await host.call('PUT', '/api/directory/workflows/bad-3', { body });
      expectProblem(missing, 401, 'token_missing');
      expect(missing.headers.get('www-authenticate')).toBe('Bearer');
      expectProblem(await put('workflows/bad-3', body, 'not-a-jwt'), 401, 'token_invalid');
      const expired = await token({ sub: 'platform', roles: ['service'], ttlSeconds: -60 });
      expectProblem(await put('workflows/bad-3', body, expired), 401, 'token_expired');
      const { mintToken } = await import('../../src/local/token.js');
      const forged = await mintToken({
        sub: 'platform',
        roles: ['service'],
        secret: 'a-different-secret-that-is-long-enough-0000',
        issuer: 'billing-local',
        audience: 'billing-api',
      });
      expectProblem(await put('workflows/bad-3', body, forged), 401, 'token_invalid');
      const wrongAudience = await mintToken({
        sub: 'platform',
        roles: ['service'],
        secret: 'local-development-only-secret-0123456789abcdef',
        issuer: 'billing-local',
        audience: 'someone-else',
      });
      expectProblem(await put('workflows/bad-3', body, wrongAudience), 401, 'token_invalid');
      expect(await workflowsOf('u-bad')).toBe(1);
    });

    it('a user token on a service endpoint', async () => {
      const user = await token({ sub: 'u-bad', org: 'o-bad' });
      expectProblem(
        await put('workflows/bad-3', { workspace: { orgId: 'o-bad' }, nodeCount: 1 }, user),
        403,
        'service_role_required',
      );
      expectProblem(
        await check({ subject: { userId: 'u-bad' }, feature: 'workflows' }, user),
        403,
        'service_role_required',
      );
      expect(await workflowsOf('u-bad')).toBe(1);
    });

    it("another owner's organization cannot be taken over", async () => {
      const response = await put('orgs/o-bad', { creatorId: 'u-evil' });
      expectProblem(response, 409, 'org_creator_immutable');
      expect((await host.services.directory.getOrg('o-bad'))?.ownerId).toBe('u-bad');
    });

    it('an item in an organization the directory does not know', async () => {
      expectProblem(
        await put('workflows/bad-4', { workspace: { orgId: 'o-ghost' }, nodeCount: 1 }),
        404,
        'org_not_found',
      );
      expectProblem(
        await check({ subject: { orgId: 'o-ghost' }, feature: 'workflows' }),
        404,
        'org_not_found',
      );
    });

    it('unknown routes and methods', async () => {
      expectProblem(await host.call('GET', '/api/nothing-here'), 404, 'route_not_found');
      const wrongMethod = await host.call('PATCH', '/api/directory/orgs/o-bad', { token: service });
      expectProblem(wrongMethod, 405, 'method_not_allowed');
      expect(wrongMethod.headers.get('allow')).toBe('PUT, DELETE');
    });
  });
});
