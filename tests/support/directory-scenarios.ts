import type { Directory } from '../../src/billing/directory/index.js';
import type { Services } from '../../src/composition.js';
import { directoryViolations } from './invariants.js';
import { memoryTables, servicesOver, type Tables } from './stores.js';

export { memoryTables, servicesOver, type Tables };

import { givenSubscription } from './memory.js';
import { type FailureMode, faultyTables, InjectedFailure } from './tables.js';

/**
 * Directory operations run with each storage call failing in turn, then retried (or followed by a
 * DELETE of everything), against the invariants of `directoryViolations`: the proof that no crash point
 * leaves a row counted that cannot be deleted, and that a retry finishes the job.
 */

export const SCOPE = {
  owners: ['alice', 'bob'],
  orgs: ['acme', 'beta', 'other', 'gamma'],
  workflows: ['wf-a1', 'wf-a2', 'wf-p1', 'wf-new'],
  credentials: ['cr-a1', 'cr-new'],
} as const;

const org = (orgId: string) => ({ kind: 'org', orgId }) as const;

/** alice (Pro) created acme and beta; bob created other. acme holds workflows, a credential, a member. */
export async function givenDirectory(services: Services): Promise<void> {
  const d = services.directory;
  await givenSubscription(services, 'alice', { plan: 'pro', status: 'active' });
  await d.putOrg('acme', { creatorId: 'alice', name: 'Acme' });
  await d.putOrg('beta', { creatorId: 'alice' });
  await d.putOrg('other', { creatorId: 'bob' });
  await d.putMember('acme', 'bob', {});
  await d.putMember('acme', 'carl', {});
  await d.putMember('beta', 'carl', {});
  await d.putWorkflow('wf-a1', { workspace: org('acme'), nodeCount: 3 });
  await d.putWorkflow('wf-a2', { workspace: org('acme'), nodeCount: 3 });
  await d.putWorkflow('wf-p1', { workspace: { kind: 'personal', userId: 'alice' }, nodeCount: 1 });
  await d.putCredential('cr-a1', { workspace: org('acme') });
}

export interface Scenario {
  readonly name: string;
  readonly run: (directory: Directory) => Promise<unknown>;
}

export const SCENARIOS: readonly Scenario[] = [
  { name: 'PUT a new organization', run: (d) => d.putOrg('gamma', { creatorId: 'alice', name: 'Gamma' }) },
  {
    name: 'PUT an organization renamed',
    run: (d) => d.putOrg('acme', { creatorId: 'alice', name: 'Acme Inc' }),
  },
  { name: 'DELETE an organization with items and members', run: (d) => d.deleteOrg('acme') },
  { name: 'PUT a member who takes a new seat', run: (d) => d.putMember('beta', 'dora', {}) },
  { name: 'PUT a member already seated elsewhere', run: (d) => d.putMember('beta', 'bob', {}) },
  { name: 'DELETE a member', run: (d) => d.deleteMember('acme', 'carl') },
  {
    name: 'PUT a new workflow',
    run: (d) => d.putWorkflow('wf-new', { workspace: org('beta'), nodeCount: 2 }),
  },
  {
    name: 'PUT a workflow moved within its owner',
    run: (d) => d.putWorkflow('wf-a1', { workspace: org('beta'), nodeCount: 3 }),
  },
  {
    name: 'PUT a workflow moved to another owner',
    run: (d) => d.putWorkflow('wf-a1', { workspace: org('other'), nodeCount: 3 }),
  },
  {
    name: 'PUT a workflow with a new node count',
    run: (d) => d.putWorkflow('wf-a1', { workspace: org('acme'), nodeCount: 7 }),
  },
  { name: 'DELETE a workflow', run: (d) => d.deleteWorkflow('wf-a1') },
  {
    name: 'PUT a new credential',
    run: (d) => d.putCredential('cr-new', { workspace: { kind: 'personal', userId: 'bob' } }),
  },
  {
    name: 'PUT a credential moved to another owner',
    run: (d) => d.putCredential('cr-a1', { workspace: org('other') }),
  },
  { name: 'DELETE a credential', run: (d) => d.deleteCredential('cr-a1') },
];

/** What the directory says, through its own API: the state a retry must reach. */
export async function logicalState(directory: Directory) {
  const owners = await Promise.all(SCOPE.owners.map(async (o) => [o, await directory.counts(o)] as const));
  const orgs = await Promise.all(SCOPE.orgs.map(async (o) => [o, await directory.getOrg(o)] as const));
  const workflows = await Promise.all(
    SCOPE.workflows.map(async (w) => [w, await directory.getWorkflow(w)] as const),
  );
  const credentials = await Promise.all(
    SCOPE.credentials.map(async (c) => [c, await directory.getCredential(c)] as const),
  );
  const members = await Promise.all(
    ['acme', 'beta'].flatMap((o) =>
      ['bob', 'carl', 'dora'].map(async (u) => [`${o}/${u}`, await directory.isMember(o, u)] as const),
    ),
  );
  return { owners, orgs, workflows, credentials, members };
}

/** Deletes everything in scope, as a platform cleaning up would: after it, nothing may stay counted. */
export async function deleteEverything(directory: Directory): Promise<void> {
  for (const id of SCOPE.workflows) await directory.deleteWorkflow(id);
  for (const id of SCOPE.credentials) await directory.deleteCredential(id);
  for (const id of SCOPE.orgs) await directory.deleteOrg(id);
}

const isInjected = (error: unknown): boolean =>
  error instanceof InjectedFailure ||
  (error instanceof Error && error.cause !== undefined && isInjected(error.cause));

export interface CrashRun {
  readonly calls: number;
  readonly failures: Array<{ readonly call: number; readonly mode: FailureMode; readonly problem: string }>;
}

/**
 * Runs `scenario` once to count its storage calls, then once per call and mode with that call failing,
 * each time on fresh tables from `makeTables`; after the failure, repeats the operation (it must
 * finish in the reference state) or deletes everything (nothing may stay counted).
 */
export async function crashEveryCall(
  scenario: Scenario,
  makeTables: () => Tables,
  then: 'retry' | 'delete-everything',
): Promise<CrashRun> {
  const fresh = async () => {
    const tables = makeTables();
    await givenDirectory(servicesOver(tables));
    return tables;
  };
  const referenceTables = await fresh();
  const counting = faultyTables(referenceTables);
  const referenceServices = servicesOver(counting.tables);
  counting.faults.failCall(0, 'before');
  await scenario.run(referenceServices.directory);
  const calls = counting.faults.calls;
  if (then === 'delete-everything') await deleteEverything(referenceServices.directory);
  const reference = await logicalState(servicesOver(referenceTables).directory);

  const failures: CrashRun['failures'] = [];
  for (const mode of ['before', 'after'] as const) {
    for (let call = 1; call <= calls; call++) {
      const tables = await fresh();
      const faulty = faultyTables(tables);
      faulty.faults.failCall(call, mode);
      const outcome = await scenario.run(servicesOver(faulty.tables).directory).then(
        () => 'completed',
        (error: unknown) => (isInjected(error) ? 'failed' : `failed otherwise: ${String(error)}`),
      );
      if (outcome !== 'failed') {
        failures.push({
          call,
          mode,
          problem: `the operation ${outcome} although storage call ${call} failed`,
        });
        continue;
      }
      // A new process, as after a crash: nothing remembered from the failed attempt.
      const healthy = servicesOver(tables);
      if (then === 'retry') await scenario.run(healthy.directory);
      else await deleteEverything(healthy.directory);
      for (const problem of await directoryViolations(tables, SCOPE)) failures.push({ call, mode, problem });
      const state = await logicalState(servicesOver(tables).directory);
      if (JSON.stringify(state) !== JSON.stringify(reference))
        failures.push({
          call,
          mode,
          problem: `ended in ${JSON.stringify(state)}, not ${JSON.stringify(reference)}`,
        });
    }
  }
  return { calls, failures };
}
