import { beforeEach, describe, expect, it } from 'vitest';
import type { Services } from '../../src/composition.js';
import { memoryServices } from '../support/memory.js';

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
    expect(await services.directory.counts('alice').workflows()).toBe(1);
    expect((await services.directory.deleteWorkflow('wf1')).kind).toBe('deleted');
    expect((await services.directory.deleteWorkflow('wf1')).kind).toBe('absent');
    expect(await services.directory.counts('alice').workflows()).toBe(0);
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
    const counts = services.directory.counts('alice');
    expect(await counts.workflows()).toBe(4);
    expect(await counts.workflowsInOrg('acme')).toBe(2);
    expect(await counts.workflowsInOrg('beta')).toBe(1);
    expect(await services.directory.counts('carol').workflows()).toBe(1);
    expect((await services.directory.getWorkflow('a1'))?.ownerId).toBe('alice');
    expect((await counts.orgs()).map((o) => [o.orgId, o.workflows])).toEqual([
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
    expect(await services.directory.counts('alice').workflows()).toBe(0);
    expect(await services.directory.counts('carol').workflowsInOrg('other')).toBe(1);
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
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putOrg('beta', { creatorId: 'alice' });
    expect(await services.directory.counts('alice').seats()).toBe(1);
    await services.directory.putMember('acme', 'bob', {});
    await services.directory.putMember('beta', 'bob', {});
    await services.directory.putMember('beta', 'alice', { role: 'owner' });
    await services.directory.putMember('beta', 'dave', {});
    expect(await services.directory.counts('alice').seats()).toBe(3);
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
    const counts = services.directory.counts('alice');
    expect([await counts.workflows(), await counts.credentials(), await counts.seats()]).toEqual([1, 0, 1]);
    expect(await services.directory.getWorkflow('wf')).toBeUndefined();
    expect(await services.directory.getOrg('acme')).toBeUndefined();
    expect((await services.directory.deleteOrg('acme')).kind).toBe('absent');
  });

  it('counts credentials across all of the owner workspaces', async () => {
    await services.directory.putOrg('acme', { creatorId: 'alice' });
    await services.directory.putCredential('c1', { workspace: org('acme') });
    await services.directory.putCredential('c2', { workspace: personal('alice') });
    await services.directory.putCredential('c2', { workspace: personal('alice') });
    expect(await services.directory.counts('alice').credentials()).toBe(2);
    await services.directory.deleteCredential('c1');
    expect(await services.directory.counts('alice').credentials()).toBe(1);
  });
});
