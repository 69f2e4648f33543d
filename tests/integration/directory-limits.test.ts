import { describe, expect, it } from 'vitest';
import { catalog } from '../../src/billing/catalog.js';
import { BillingError } from '../../src/billing/errors.js';
import type { Services } from '../../src/composition.js';
import { directoryViolations } from '../support/invariants.js';
import { givenSubscription } from '../support/memory.js';
import { STORES, servicesOver, type Tables } from '../support/stores.js';

/**
 * Limits are exact at create: a directory PUT that creates is the claim on a slot, so N concurrent
 * creates against limit L create exactly L, also from two processes (two service instances over the
 * same tables, each with its own in-process lanes and caches). On the memory twin and on Azurite.
 */

const free = catalog.free.limits;
const org = (orgId: string) => ({ kind: 'org', orgId }) as const;

/** Two processes over the same tables, each with its own in-process lanes and caches. */
function processes(tables: Tables, env: Record<string, string> = {}): [Services, Services] {
  return [servicesOver(tables, { env }), servicesOver(tables, { env })];
}

/** Settles every call: 'ok', or the BillingError code it failed with. */
async function outcomes(calls: ReadonlyArray<() => Promise<unknown>>): Promise<string[]> {
  return Promise.all(
    calls.map((call) =>
      call().then(
        () => 'ok',
        (error: unknown) => {
          if (error instanceof BillingError) return error.code;
          throw error;
        },
      ),
    ),
  );
}

function tally(results: readonly string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const r of results) counts[r] = (counts[r] ?? 0) + 1;
  return counts;
}

const limit = (value: number | null) => {
  if (value === null) throw new Error('the test needs a finite limit');
  return value;
};

describe.each(STORES)('directory limits (%s)', (_name, makeTables) => {
  it('creates exactly the limit of workflows in an organization out of many concurrent creates, from two processes', async () => {
    const tables = makeTables();
    const [a, b] = processes(tables);
    await a.directory.putOrg('acme', { creatorId: 'alice' });
    const perOrg = limit(free.workflows_per_org);
    const results = await outcomes(
      Array.from(
        { length: 4 * perOrg },
        (_, i) => () =>
          (i % 2 ? a : b).directory.putWorkflow(`wf${i}`, { workspace: org('acme'), nodeCount: 1 }),
      ),
    );
    expect(tally(results)).toEqual({ ok: perOrg, limit_exceeded: 3 * perOrg });
    const counts = await a.directory.counts('alice');
    expect(counts.workflows).toBe(perOrg);
    expect(counts.orgs[0]?.workflows).toBe(perOrg);
    const created = Array.from({ length: 4 * perOrg }, (_, i) => `wf${i}`);
    expect(
      await directoryViolations(tables, {
        owners: ['alice'],
        orgs: ['acme'],
        workflows: created,
        credentials: [],
      }),
    ).toEqual([]);
  }, 60_000);

  it("creates exactly the owner's total across workspaces, and says which limit and how full", async () => {
    const tables = makeTables();
    const [a, b] = processes(tables);
    for (const id of ['o1', 'o2', 'o3']) await a.directory.putOrg(id, { creatorId: 'alice' });
    const total = limit(free.workflows);
    const workspaces = [org('o1'), org('o2'), org('o3'), { kind: 'personal', userId: 'alice' } as const];
    const results = await outcomes(
      Array.from(
        { length: 3 * total },
        (_, i) => () =>
          (i % 2 ? a : b).directory.putWorkflow(`t${i}`, {
            workspace: workspaces[i % 4] ?? org('o1'),
            nodeCount: 1,
          }),
      ),
    );
    expect(results.filter((r) => r === 'ok')).toHaveLength(total);
    expect((await a.directory.counts('alice')).workflows).toBe(total);
    const refused = await a.directory
      .putWorkflow('one-more', { workspace: { kind: 'personal', userId: 'alice' }, nodeCount: 1 })
      .catch((error: unknown) => error);
    expect(refused).toMatchObject({
      kind: 'payment_required',
      code: 'limit_exceeded',
      extensions: { feature: 'workflows', limit: total, used: total },
    });
    expect(await a.directory.getWorkflow('one-more')).toBeUndefined();
  }, 60_000);

  it('creates exactly the credentials limit, and exactly the seats limit of new people', async () => {
    const tables = makeTables();
    const [a, b] = processes(tables);
    await a.directory.putOrg('acme', { creatorId: 'alice' });
    await a.directory.putOrg('beta', { creatorId: 'alice' });
    const credentials = limit(free.credentials);
    const credentialResults = await outcomes(
      Array.from(
        { length: 2 * credentials + 3 },
        (_, i) => () => (i % 2 ? a : b).directory.putCredential(`c${i}`, { workspace: org('acme') }),
      ),
    );
    expect(credentialResults.filter((r) => r === 'ok')).toHaveLength(credentials);
    const seats = limit(free.seats);
    const memberResults = await outcomes(
      Array.from(
        { length: 8 },
        (_, i) => () => (i % 2 ? a : b).directory.putMember('acme', `person${i}`, {}),
      ),
    );
    // The owner holds one seat; the rest go to the first people to arrive.
    expect(memberResults.filter((r) => r === 'ok')).toHaveLength(seats - 1);
    const seated = memberResults.indexOf('ok');
    // A person already seated joins another organization without taking another seat; the owner too.
    await b.directory.putMember('beta', `person${seated}`, {});
    await b.directory.putMember('beta', 'alice', { role: 'owner' });
    expect((await a.directory.counts('alice')).seats).toBe(seats);
    await expect(a.directory.putMember('beta', 'newcomer', {})).rejects.toMatchObject({
      code: 'limit_exceeded',
      extensions: { feature: 'seats', limit: seats, used: seats },
    });
  }, 60_000);

  it('under monitor, creates beyond the limit and records each would-be denial', async () => {
    const tables = makeTables();
    const [a] = processes(tables, { ENFORCEMENT_OVERRIDES: 'workflows_per_org=monitor' });
    await a.directory.putOrg('acme', { creatorId: 'alice' });
    const perOrg = limit(free.workflows_per_org);
    for (let i = 0; i < perOrg + 2; i++)
      await a.directory.putWorkflow(`m${i}`, { workspace: org('acme'), nodeCount: 1 });
    expect((await a.directory.counts('alice')).workflows).toBe(perOrg + 2);
    const records = await tables.billing.list('alice', { prefix: 'monitor|' });
    const recorded = records.map((r) => [r.props.feature, r.props.why, r.props.used]);
    expect(recorded.sort((x, y) => Number(x[2]) - Number(y[2]))).toEqual([
      ['workflows_per_org', 'monitor', perOrg],
      ['workflows_per_org', 'monitor', perOrg + 1],
    ]);
    // A node count raised over the limit in place is allowed and recorded the same way.
    const [n] = processes(tables, { ENFORCEMENT_OVERRIDES: 'nodes_per_workflow=monitor' });
    const nodes = limit(free.nodes_per_workflow);
    expect((await n.directory.putWorkflow('m0', { workspace: org('acme'), nodeCount: nodes + 3 })).kind).toBe(
      'updated',
    );
    const nodeRecords = await tables.billing.list('alice', { prefix: 'monitor|' });
    expect(
      nodeRecords.filter((r) => r.props.feature === 'nodes_per_workflow').map((r) => r.props.used),
    ).toEqual([nodes + 3]);
  }, 60_000);

  it('records a backfill with enforce: false beyond the limits; what is over is locked', async () => {
    const tables = makeTables();
    const [a] = processes(tables);
    await a.directory.putOrg('acme', { creatorId: 'alice' });
    const perOrg = limit(free.workflows_per_org);
    for (let i = 0; i < perOrg + 1; i++) {
      await a.directory.putWorkflow(`b${i}`, { workspace: org('acme'), nodeCount: 1, enforce: false });
    }
    const newest = await a.entitlements.check({
      subject: { workflowId: `b${perOrg}` },
      feature: 'executions',
    });
    expect(newest).toMatchObject({ allowed: false, reason: 'resource_locked' });
    const oldest = await a.entitlements.check({ subject: { workflowId: 'b0' }, feature: 'executions' });
    expect(oldest).toMatchObject({ allowed: true, reason: 'within_limit' });
  }, 60_000);

  it('refuses a move into a full organization, leaving the workflow where it was', async () => {
    const tables = makeTables();
    const [a] = processes(tables);
    await a.directory.putOrg('full', { creatorId: 'alice' });
    await a.directory.putOrg('other', { creatorId: 'bob' });
    const perOrg = limit(free.workflows_per_org);
    for (let i = 0; i < perOrg; i++)
      await a.directory.putWorkflow(`f${i}`, { workspace: org('full'), nodeCount: 1 });
    await a.directory.putWorkflow('mover', { workspace: org('other'), nodeCount: 1 });
    await expect(
      a.directory.putWorkflow('mover', { workspace: org('full'), nodeCount: 1 }),
    ).rejects.toMatchObject({
      code: 'limit_exceeded',
      extensions: { feature: 'workflows_per_org' },
    });
    expect((await a.directory.getWorkflow('mover'))?.workspace).toEqual(org('other'));
    expect((await a.directory.counts('bob')).workflows).toBe(1);
    expect((await a.directory.counts('alice')).workflows).toBe(perOrg);
  }, 60_000);

  it('refuses raising a node count over the limit, never an update that does not raise it', async () => {
    const tables = makeTables();
    const [a] = processes(tables);
    const nodes = limit(free.nodes_per_workflow);
    const ws = { kind: 'personal', userId: 'alice' } as const;
    await a.directory.putWorkflow('w', { workspace: ws, nodeCount: nodes });
    await expect(a.directory.putWorkflow('w', { workspace: ws, nodeCount: nodes + 1 })).rejects.toMatchObject(
      {
        code: 'limit_exceeded',
        extensions: { feature: 'nodes_per_workflow', limit: nodes, used: nodes + 1 },
      },
    );
    expect((await a.directory.getWorkflow('w'))?.nodeCount).toBe(nodes);
    // Over the limit after a downgrade: saving it unchanged or smaller is never refused.
    await givenSubscription(a, 'alice', { plan: 'pro', status: 'active' });
    await a.directory.putWorkflow('w', { workspace: ws, nodeCount: nodes + 20 });
    await givenSubscription(a, 'alice', { plan: 'pro', status: 'canceled' });
    expect((await a.directory.putWorkflow('w', { workspace: ws, nodeCount: nodes + 20 })).kind).toBe(
      'unchanged',
    );
    expect((await a.directory.putWorkflow('w', { workspace: ws, nodeCount: nodes + 10 })).kind).toBe(
      'updated',
    );
  }, 60_000);

  it('gives an organization id to exactly one of many concurrent creators', async () => {
    const tables = makeTables();
    const [a, b] = processes(tables);
    for (let round = 0; round < 5; round++) {
      const orgId = `contested${round}`;
      const creators = Array.from({ length: 6 }, (_, i) => `creator${round}-${i}`);
      const results = await outcomes(
        creators.map((creatorId, i) => () => (i % 2 ? a : b).directory.putOrg(orgId, { creatorId })),
      );
      expect(tally(results)).toEqual({ ok: 1, org_creator_immutable: 5 });
      const winner = creators[results.indexOf('ok')] ?? '';
      expect((await a.directory.getOrg(orgId))?.ownerId).toBe(winner);
      for (const creator of creators) {
        const held = (await a.directory.counts(creator)).orgs.map((o) => o.orgId);
        expect(held).toEqual(creator === winner ? [orgId] : []);
      }
    }
  }, 60_000);

  it('keeps both of two concurrent changes to the picks of what to keep', async () => {
    const tables = makeTables();
    const [a, b] = processes(tables);
    for (let round = 0; round < 10; round++) {
      await Promise.all([
        a.locks.setPreferences(
          'alice',
          { workflows: [`w${round}`] },
          { actor: 'alice', requestId: `a${round}` },
        ),
        b.locks.setPreferences(
          'alice',
          { credentials: [`c${round}`] },
          { actor: 'alice', requestId: `b${round}` },
        ),
      ]);
      expect(await a.locks.preferences('alice')).toEqual({
        workflows: [`w${round}`],
        credentials: [`c${round}`],
      });
    }
  }, 60_000);

  it('answers 400, never 503, to picks too long to store', async () => {
    const tables = makeTables();
    const [a] = processes(tables);
    const ids = Array.from({ length: 9_000 }, (_, i) => `a-rather-long-workflow-identifier-${i}`);
    await expect(
      a.locks.setPreferences('alice', { workflows: ids }, { actor: 'alice', requestId: 'r1' }),
    ).rejects.toMatchObject({
      kind: 'validation',
      code: 'keep_list_too_large',
    });
    expect(await a.locks.preferences('alice')).toEqual({ workflows: [], credentials: [] });
  }, 60_000);

  it('leaves nothing counted when an organization is deleted while its workflows and members are being put', async () => {
    const tables = makeTables();
    const [a, b] = processes(tables);
    await givenSubscription(a, 'alice', { plan: 'team', status: 'active', seats: 50 });
    const workflows: string[] = [];
    const orgs: string[] = [];
    for (let round = 0; round < 6; round++) {
      const orgId = `doomed${round}`;
      orgs.push(orgId);
      await a.directory.putOrg(orgId, { creatorId: 'alice' });
      for (let i = 0; i < 3; i++)
        await a.directory.putWorkflow(`${orgId}-old${i}`, { workspace: org(orgId), nodeCount: 1 });
      const racing = Array.from({ length: 6 }, (_, i) => `${orgId}-new${i}`);
      workflows.push(...racing, ...[0, 1, 2].map((i) => `${orgId}-old${i}`));
      await outcomes([
        () => a.directory.deleteOrg(orgId),
        ...racing.map(
          (id, i) => () => (i % 2 ? a : b).directory.putWorkflow(id, { workspace: org(orgId), nodeCount: 1 }),
        ),
        ...[0, 1, 2].map((i) => () => b.directory.putMember(orgId, `m${round}-${i}`, {})),
      ]);
      // The platform then deletes the organization for good (a PUT may have come after the DELETE).
      await a.directory.deleteOrg(orgId);
    }
    expect(
      await directoryViolations(tables, { owners: ['alice'], orgs, workflows, credentials: [] }),
    ).toEqual([]);
    const counts = await a.directory.counts('alice');
    expect([counts.workflows, counts.seats, counts.orgs.length]).toEqual([0, 1, 0]);
  }, 120_000);
});
