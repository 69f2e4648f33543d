import { describe, expect, it } from 'vitest';
import { capabilitiesFor } from '../../src/billing/access/decide.js';
import { computeLockSet, emptyLockSet, hasLocks } from '../../src/billing/access/locks.js';
import { AUDIT_PREFIX, GLOBAL_AUDIT_PARTITION } from '../../src/billing/audit/entry.js';
import { encodeAuditId } from '../../src/billing/audit/ids.js';
import { STALE_REVERT_MS } from '../../src/billing/audit/revert.js';
import { catalog } from '../../src/billing/catalog.js';
import { BillingError } from '../../src/billing/errors.js';
import { monitorIndexPartition } from '../../src/billing/ops/monitor.js';
import { listOwnedItems } from '../../src/billing/owner/items.js';
import { parseSnapshot } from '../../src/billing/owner/snapshot.js';
import type { Services } from '../../src/composition.js';
import { manualClock } from '../support/memory.js';
import { STORES, servicesOver, type Tables } from '../support/stores.js';
import { type FailureMode, faultyTables, InjectedFailure } from '../support/tables.js';

/**
 * Every operator change, with each of its storage calls failing in turn (before it reaches storage, and
 * after it took effect with its answer lost), then the same request repeated by a new process: it must
 * end as if it had run once (one audit row, the setting stored, the lock set computed for the limits in
 * force), on the in-memory twin and on Azurite.
 */

const OWNER = 'crash-owner';
const T0 = '2026-11-15T12:00:00.000Z';
const admin = { actor: 'ops_1', requestId: 'req-crash', reason: 'crash test' };

interface Scenario {
  readonly name: string;
  readonly env?: Record<string, string>;
  /** State before the operation (on healthy storage). */
  readonly given?: (services: Services) => Promise<void>;
  readonly run: (services: Services) => Promise<unknown>;
  /** The audit partition and the kinds of row the change writes once each (none for a check). */
  readonly audit?: { readonly partition: string; readonly kind: string | readonly string[] };
  /** How much later the repeat runs (a revert takes over a claim left by a crash once it is stale). */
  readonly repeatAfterMs?: number;
}

async function twelveWorkflows(services: Services) {
  for (let i = 0; i < 12; i++)
    await services.directory.putWorkflow(`wf-${String(i).padStart(2, '0')}`, {
      workspace: { kind: 'personal', userId: OWNER },
      nodeCount: 1,
      enforce: false,
    });
}

const SCENARIOS: readonly Scenario[] = [
  {
    name: 'override PUT that unlocks (moves the lock set)',
    given: twelveWorkflows,
    run: (s) =>
      s.overrides.set(
        OWNER,
        { limits: { workflows: 12 }, flags: { ai_nodes: true }, expiresAt: null },
        admin,
      ),
    audit: { partition: OWNER, kind: 'override_set' },
  },
  {
    name: 'override DELETE that locks again',
    given: async (s) => {
      await s.overrides.set(
        OWNER,
        { limits: { workflows: 12 }, flags: {}, expiresAt: null },
        {
          ...admin,
          requestId: 'req-given',
        },
      );
      await twelveWorkflows(s);
    },
    run: (s) => s.overrides.clear(OWNER, admin),
    audit: { partition: OWNER, kind: 'override_removed' },
  },
  {
    name: 'owner enforcement PUT',
    run: (s) => s.ownerEnforcement.set(OWNER, { mode: 'monitor', features: { seats: 'off' } }, admin),
    audit: { partition: OWNER, kind: 'enforcement_set' },
  },
  {
    name: 'cohort rules PUT',
    run: (s) => s.cohorts.set([{ createdBefore: T0, mode: 'monitor' }], admin),
    audit: { partition: GLOBAL_AUDIT_PARTITION, kind: 'cohort_enforcement_set' },
  },
  {
    name: "revert of an override (the claim, the handler's change, then the revert row)",
    given: async (s) => {
      await twelveWorkflows(s);
      await s.overrides.set(
        OWNER,
        { limits: { workflows: 12 }, flags: {}, expiresAt: null },
        { ...admin, requestId: 'req-given' },
      );
    },
    async run(s) {
      const granted = (await s.tables.billing.list(OWNER, { prefix: AUDIT_PREFIX })).find(
        (row) => row.props.kind === 'override_set',
      );
      if (granted === undefined) throw new Error('no override_set row');
      try {
        await s.reverter.revert({
          id: encodeAuditId(OWNER, granted.rowKey),
          reason: 'crash test',
          actor: 'ops_2',
          requestId: 'req-revert',
        });
      } catch (error) {
        // The repeat of a revert whose first run committed is answered as such; the state is what counts.
        if (!(error instanceof BillingError && error.code === 'already_reverted')) throw error;
      }
    },
    audit: { partition: OWNER, kind: ['override_set', 'override_removed', 'audit_reverted'] },
    repeatAfterMs: STALE_REVERT_MS + 1_000,
  },
  {
    name: 'a check recorded under monitor (the day index, then the record)',
    env: { ENFORCEMENT_DEFAULT: 'monitor' },
    given: twelveWorkflows,
    run: (s) => s.entitlements.check({ subject: { userId: OWNER }, feature: 'workflows' }),
  },
];

async function violations(tables: Tables, scenario: Scenario): Promise<string[]> {
  const problems: string[] = [];
  const rows = await tables.billing.list(OWNER);
  // Straight from storage, without the repair a read through OwnerAccess would make.
  const snapshot = parseSnapshot(
    OWNER,
    rows.filter((r) => r.rowKey.startsWith('s|')),
    new Date(T0),
  );
  const caps = capabilitiesFor(snapshot, catalog);
  const items = await listOwnedItems(tables.billing, OWNER);
  const expected = computeLockSet(items, caps.limits, snapshot.keep.picks);
  const stored = snapshot.allocation.locks;
  if (items.workflows.length > 0) {
    const want = hasLocks(expected) ? expected : emptyLockSet(caps.limits);
    if (JSON.stringify(stored) !== JSON.stringify(want))
      problems.push(`lock set ${JSON.stringify(stored)}, not ${JSON.stringify(want)}`);
  }
  if (scenario.audit) {
    const rows = await tables.billing.list(scenario.audit.partition, { prefix: 'audit|' });
    for (const kind of [scenario.audit.kind].flat()) {
      const audits = rows.filter((row) => row.props.kind === kind);
      if (audits.length !== 1) problems.push(`${audits.length} ${kind} audit rows, not 1`);
    }
  }
  const day = await tables.billing.list(monitorIndexPartition(T0.slice(0, 10)));
  const records = rows.filter((r) => r.rowKey.startsWith('monitor|'));
  if (records.length > 0 && !day.some((row) => row.props.ownerId === OWNER))
    problems.push('a monitor record whose owner is not in the day index');
  return problems;
}

describe.each(STORES)('operator changes: a failure at any storage call (%s)', (_name, makeTables) => {
  it.each(SCENARIOS)('$name: the same request repeated finishes it once', async (scenario) => {
    const process = (tables: Tables, laterMs = 0) =>
      servicesOver(tables, {
        clock: manualClock(new Date(Date.parse(T0) + laterMs).toISOString()),
        ...(scenario.env ? { env: scenario.env } : {}),
      });
    const fresh = async () => {
      const tables = makeTables();
      const services = process(tables);
      await services.migration.run();
      await scenario.given?.(services);
      return tables;
    };
    const counting = faultyTables(await fresh());
    counting.faults.failCall(0, 'before');
    await scenario.run(process(counting.tables));
    const calls = counting.faults.calls;
    expect(calls).toBeGreaterThan(0);

    const failures: string[] = [];
    for (const mode of ['before', 'after'] as FailureMode[]) {
      for (let call = 1; call <= calls; call++) {
        const tables = await fresh();
        const faulty = faultyTables(tables);
        faulty.faults.failCall(call, mode);
        const outcome = await scenario.run(process(faulty.tables)).then(
          () => 'completed',
          (error: unknown) =>
            error instanceof InjectedFailure ? 'failed' : `failed otherwise: ${String(error)}`,
        );
        if (outcome === 'completed') {
          // Only a call after the commit can fail without failing the request: the audit's day index
          // confirmation (readers settle a pending index row from the owner's row). What committed must
          // already be whole, without a retry.
          for (const problem of await violations(tables, scenario))
            failures.push(`call ${call} ${mode}, completed: ${problem}`);
          continue;
        }
        if (outcome !== 'failed') {
          failures.push(`call ${call} ${mode}: ${outcome}`);
          continue;
        }
        await scenario.run(process(tables, scenario.repeatAfterMs));
        for (const problem of await violations(tables, scenario))
          failures.push(`call ${call} ${mode}: ${problem}`);
      }
    }
    expect(failures).toEqual([]);
  });
});
