import { beforeEach, describe, expect, it } from 'vitest';
import type { Services } from '../../src/composition.js';
import { givenSubscription, memoryServices } from '../support/memory.js';

const org = (orgId: string) => ({ kind: 'org', orgId }) as const;
const personal = (userId: string) => ({ kind: 'personal', userId }) as const;

describe('directory', () => {
  let services: Services;
  beforeEach(() => {
    services = memoryServices();
  });

  it('resolves a personal workspace to its user and an organization to its creator', async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    expect(await services.directory.ownerOfWorkspace(personal('bob'))).toBe('bob');
    expect(await services.directory.ownerOfWorkspace(org('acme'))).toBe('alice');
    await expect(services.directory.ownerOfWorkspace(org('nope'))).rejects.toMatchObject({
      code: 'org_not_found',
    });
  });

  it('is idempotent: PUT twice creates once, DELETE twice deletes once', async () => {
    expect((await services.directory.putOrg('acme', { creatorId: 'alice', name: 'Acme' })).kind).toBe(
      'created',
    );
    expect((await services.directory.putOrg('acme', { creatorId: 'alice', name: 'Acme' })).kind).toBe(
      'unchanged',
    );
    expect((await services.directory.putOrg('acme', { creatorId: 'alice', name: 'Acme Inc' })).kind).toBe(
      'updated',
    );
    expect((await services.directory.putWorkflow('wf1', { workspace: org('acme'), nodeCount: 3 })).kind).toBe(
      'created',
    );
    expect((await services.directory.putWorkflow('wf1', { workspace: org('acme'), nodeCount: 3 })).kind).toBe(
      'unchanged',
    );
    expect((await services.directory.counts('alice')).workflows).toBe(1);
    expect((await services.directory.deleteWorkflow('wf1')).kind).toBe('deleted');
    expect((await services.directory.deleteWorkflow('wf1')).kind).toBe('absent');
    expect((await services.directory.counts('alice')).workflows).toBe(0);
  });

  it("counts an organization's workflows against its creator, together with the creator's personal ones", async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putOrg('beta', { creatorId: 'alice' });
    await services.directory.putOrg('other', { creatorId: 'carol' });
    await services.directory.putWorkflow('a1', { workspace: org('acme'), nodeCount: 1 });
    await services.directory.putWorkflow('a2', { workspace: org('acme'), nodeCount: 1 });
    await services.directory.putWorkflow('b1', { workspace: org('beta'), nodeCount: 1 });
    await services.directory.putWorkflow('p1', { workspace: personal('alice'), nodeCount: 1 });
    await services.directory.putWorkflow('o1', { workspace: org('other'), nodeCount: 1 });
    const counts = await services.directory.counts('alice');
    expect(counts.workflows).toBe(4);
    expect(counts.orgs.find((o) => o.orgId === 'acme')?.workflows).toBe(2);
    expect(counts.orgs.find((o) => o.orgId === 'beta')?.workflows).toBe(1);
    expect((await services.directory.counts('carol')).workflows).toBe(1);
    expect((await services.directory.getWorkflow('a1'))?.ownerId).toBe('alice');
    expect(counts.orgs.map((o) => [o.orgId, o.workflows])).toEqual([
      ['acme', 2],
      ['beta', 1],
    ]);
  });

  it('moves a workflow between workspaces and owners when PUT names another workspace', async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putOrg('other', { creatorId: 'carol' });
    await services.directory.putWorkflow('wf', { workspace: org('acme'), nodeCount: 2 });
    const moved = await services.directory.putWorkflow('wf', { workspace: org('other'), nodeCount: 2 });
    expect(moved.kind).toBe('updated');
    expect((await services.directory.counts('alice')).workflows).toBe(0);
    expect((await services.directory.counts('carol')).orgs[0]?.workflows).toBe(1);
    expect((await services.directory.getWorkflow('wf'))?.ownerId).toBe('carol');
  });

  it("refuses to change an organization's creator and changes nothing", async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await expect(services.directory.putOrg('acme', { creatorId: 'mallory' })).rejects.toMatchObject({
      code: 'org_creator_immutable',
    });
    expect((await services.directory.getOrg('acme'))?.ownerId).toBe('alice');
  });

  it('counts seats as distinct people across the owner organizations, the owner included', async () => {
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'active' });
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putOrg('beta', { creatorId: 'alice' });
    expect((await services.directory.counts('alice')).seats).toBe(1);
    await services.directory.putMember('acme', 'bob', {});
    await services.directory.putMember('beta', 'bob', {});
    await services.directory.putMember('beta', 'alice', { role: 'owner' });
    await services.directory.putMember('beta', 'dave', {});
    expect((await services.directory.counts('alice')).seats).toBe(3);
    expect(await services.directory.isMember('acme', 'bob')).toBe(true);
    expect(await services.directory.isMember('acme', 'alice')).toBe(true);
    expect(await services.directory.isMember('acme', 'dave')).toBe(false);
    await services.directory.deleteMember('acme', 'bob');
    expect(await services.directory.isMember('acme', 'bob')).toBe(false);
    await expect(services.directory.putMember('nope', 'bob', {})).rejects.toMatchObject({
      code: 'org_not_found',
    });
  });

  it('deleting an organization removes its members, workflows and credentials from the owner', async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putMember('acme', 'bob', {});
    await services.directory.putWorkflow('wf', { workspace: org('acme'), nodeCount: 1 });
    await services.directory.putWorkflow('mine', { workspace: personal('alice'), nodeCount: 1 });
    await services.directory.putCredential('cred', { workspace: org('acme') });
    await services.directory.deleteOrg('acme');
    const counts = await services.directory.counts('alice');
    expect([counts.workflows, counts.credentials, counts.seats]).toEqual([1, 0, 1]);
    expect(await services.directory.getWorkflow('wf')).toBeUndefined();
    expect(await services.directory.getOrg('acme')).toBeUndefined();
    expect((await services.directory.deleteOrg('acme')).kind).toBe('absent');
  });

  it('counts credentials across all of the owner workspaces', async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putCredential('c1', { workspace: org('acme') });
    await services.directory.putCredential('c2', { workspace: personal('alice') });
    await services.directory.putCredential('c2', { workspace: personal('alice') });
    expect((await services.directory.counts('alice')).credentials).toBe(2);
    await services.directory.deleteCredential('c1');
    expect((await services.directory.counts('alice')).credentials).toBe(1);
  });

  it('settles concurrent moves of one workflow with exactly one counted row, where the index says', async () => {
    for (const [orgId, owner] of [
      ['a', 'alice'],
      ['b', 'bob'],
      ['c', 'carol'],
      ['d', 'dave'],
    ] as const) {
      await services.directory.putOrg(orgId, { creatorId: owner });
    }
    for (let round = 0; round < 20; round++) {
      const id = `wf${round}`;
      // Recorded without enforcing (a backfill): this is about counting, and the orgs fill up.
      await services.directory.putWorkflow(id, { workspace: org('a'), nodeCount: 1, enforce: false });
      await Promise.all(
        ['b', 'c', 'd'].map((orgId) =>
          services.directory.putWorkflow(id, { workspace: org(orgId), nodeCount: 1, enforce: false }),
        ),
      );
      const where = await services.directory.getWorkflow(id);
      const counted = await Promise.all(
        ['alice', 'bob', 'carol', 'dave'].map(
          async (owner) => (await services.directory.counts(owner)).workflows,
        ),
      );
      expect(counted.reduce((a, b) => a + b, 0)).toBe(round + 1);
      expect(where?.ownerId).toBeDefined();
      await services.directory.deleteWorkflow(id);
      await services.directory.putWorkflow(id, { workspace: org('a'), nodeCount: 1, enforce: false });
    }
  });
});
