import { z } from 'zod';
import { capabilitiesFor, lockSetInForce } from '../access/decide.js';
import type { KeptScope } from '../access/locks.js';
import { type Catalog, LIMIT_NAMES, METER_NAMES, meterAllowance } from '../catalog.js';
import { contractPaymentInstants } from '../contracts/model.js';
import { ownerEnforcementSchema } from '../enforcement.js';
import { liveOrg, meterStatus, type OwnerSnapshot, seatsInUse } from '../owner/snapshot.js';

/**
 * What an owner is entitled to at one version: the part of the snapshot a platform service caches.
 * Computed by the same functions decisions use (`capabilitiesFor`, `meterStatus`, `lockSetInForce`), so
 * whatever they learn (overrides, contracts, per-owner enforcement added to the capabilities) shows here
 * without this module knowing of it: limits and flags are copied whole from the capabilities in force.
 *
 * Deliberately left out: counts and balances themselves (every consumption would be a change), only
 * whether each limit is exhausted; the usage period (it changes by the clock, not by a write).
 */
/** The wire shape of a view (zod: the outbox row is parsed with it when read back). */
export const entitlementViewSchema = z.object({
  plan: z.string(),
  status: z.string(),
  accessLevel: z.string(),
  /** In force now (the free plan's while payment is locked); `null` is unlimited. */
  limits: z.record(z.string(), z.number().int().nullable()),
  flags: z.record(z.string(), z.boolean()),
  /** The owner's own cap on people (`PUT /api/billing/seats`), `null` without one. */
  maxSeats: z.number().int().nullable(),
  /**
   * The owner's own enforcement setting (`/api/ops/owners/{id}/enforcement`), `null` without one. Cohort
   * rules are global settings, not part of any owner's version: they reach caches within their own TTL.
   */
  enforcement: ownerEnforcementSchema.nullable(),
  /**
   * When this view lapses by the clock alone, with no write and so no event: the overrides' expiry, an
   * enterprise contract's start or end, an open contract invoice falling due or past its grace, whichever
   * comes first; `null` when nothing is due. A cache keeps the view no longer than this.
   */
  validUntil: z.string().nullable(),
  /**
   * Limits with nothing left, sorted: a meter (allowance and credits used up), an allocation at its
   * limit, `workflows_per_org:<orgId>` per organization, `max_seats` at the owner's cap.
   */
  exhausted: z.array(z.string()),
  /** Meters whose period allowance is used up (credits may still cover them), sorted. */
  allowanceExhausted: z.array(z.string()),
  /** Purchased credits are available to cover meters past their allowance. */
  creditsAvailable: z.boolean(),
  /**
   * Over-limit scopes and what is kept in each (everything else in the scope is locked); `null` where a
   * scope is within its limit. `stale` while the stored lock set does not match the limits (the next
   * read repairs it).
   */
  locks: z.union([
    z.literal('stale'),
    z.object({
      workflows: z.array(z.string()).nullable(),
      credentials: z.array(z.string()).nullable(),
      orgs: z.record(z.string(), z.array(z.string())),
    }),
  ]),
});
export type EntitlementView = z.infer<typeof entitlementViewSchema>;

const kept = (scope: KeptScope | null) => (scope === null ? null : [...scope.kept]);

export function entitlementView(snapshot: OwnerSnapshot, catalog: Catalog): EntitlementView {
  const caps = capabilitiesFor(snapshot, catalog);
  const exhausted: string[] = [];
  const allowanceExhausted: string[] = [];
  for (const meter of METER_NAMES) {
    const status = meterStatus(snapshot, meter, caps.period, meterAllowance(caps.limits, meter));
    if (status.remaining !== null && status.remaining <= 0) exhausted.push(meter);
    if (status.allowanceRemaining !== null && status.allowanceRemaining <= 0) allowanceExhausted.push(meter);
  }
  const atLimit = (used: number, limit: number | null) => limit !== null && used >= limit;
  for (const limit of LIMIT_NAMES) {
    if (limit === 'workflows' && atLimit(snapshot.allocation.workflows, caps.limits.workflows))
      exhausted.push(limit);
    if (limit === 'credentials' && atLimit(snapshot.allocation.credentials, caps.limits.credentials))
      exhausted.push(limit);
    if (limit === 'seats' && atLimit(seatsInUse(snapshot), caps.limits.seats)) exhausted.push(limit);
  }
  for (const orgId of snapshot.orgs.keys()) {
    const org = liveOrg(snapshot, orgId);
    if (org && atLimit(org.row.workflows, caps.limits.workflows_per_org))
      exhausted.push(`workflows_per_org:${orgId}`);
  }
  if (atLimit(seatsInUse(snapshot), snapshot.seatCap.maxSeats)) exhausted.push('max_seats');
  const set = lockSetInForce(snapshot, caps);
  return {
    plan: caps.plan,
    status: caps.status,
    accessLevel: caps.accessLevel,
    limits: { ...caps.limits },
    flags: { ...caps.flags },
    maxSeats: snapshot.seatCap.maxSeats,
    enforcement: snapshot.enforcement?.value ?? null,
    validUntil: validUntil(snapshot),
    exhausted: exhausted.sort(),
    allowanceExhausted: allowanceExhausted.sort(),
    creditsAvailable: snapshot.balance.credits > 0,
    locks:
      set === 'stale'
        ? 'stale'
        : {
            workflows: kept(set.workflows),
            credentials: kept(set.credentials),
            orgs: Object.fromEntries(
              Object.entries(set.orgs)
                .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
                .map(([orgId, scope]) => [orgId, [...scope.kept]]),
            ),
          },
  };
}

/** The first instant after the snapshot's read at which its terms move without a write. */
function validUntil(snapshot: OwnerSnapshot): string | null {
  const now = snapshot.readAt.getTime();
  const contract = snapshot.contract?.state;
  const due = [snapshot.overrides?.value.expiresAt, contract?.terms.startsAt, contract?.terms.endsAt]
    .filter((at): at is string => typeof at === 'string')
    .map((at) => Date.parse(at))
    .concat(contract ? contractPaymentInstants(contract) : [])
    .filter((at) => at > now);
  return due.length === 0 ? null : new Date(Math.min(...due)).toISOString();
}

/**
 * What differs between two views, as dotted paths of the fields that changed (`plan`,
 * `limits.workflows`, `flags.ai_nodes`, `exhausted`, `locks`, …), sorted. Empty: nothing a consumer
 * caches changed, and no event is published.
 */
export function changedFields(before: EntitlementView, after: EntitlementView): string[] {
  const changed: string[] = [];
  const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);
  for (const key of Object.keys(after) as Array<keyof EntitlementView>) {
    const a = before[key];
    const b = after[key];
    if ((key === 'limits' || key === 'flags') && typeof a === 'object' && typeof b === 'object') {
      const left = a as Readonly<Record<string, unknown>>;
      const right = b as Readonly<Record<string, unknown>>;
      for (const name of new Set([...Object.keys(left), ...Object.keys(right)]))
        if (!same(left[name], right[name])) changed.push(`${key}.${name}`);
    } else if (!same(a, b)) changed.push(key);
  }
  return changed.sort();
}
