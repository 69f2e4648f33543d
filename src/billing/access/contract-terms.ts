import type { Catalog, PlanFlags, PlanLimits } from '../catalog.js';
import { type ContractState, contractActive, contractPaymentStatus } from '../contracts/model.js';
import type { OwnerSnapshot } from '../owner/snapshot.js';
import { calendarMonth } from '../periods.js';
import type { BaseCapabilities } from './capabilities.js';
import { accessLevelOf } from './levels.js';

/**
 * The contract layer of capability resolution: base = the active enterprise contract, else the
 * subscription's plan (`capabilitiesOf`); per-owner overrides go on top of whichever base this returns.
 *
 * While a contract is active the owner is on the enterprise plan with the contract's limits, flags and
 * seats, whatever a self-serve subscription says. Its payment state (`contractPaymentStatus`) goes through
 * the same access rule as a subscription's (`levels.ts`): locked falls back to the free plan's limits and
 * flags, grace makes limits soft. Outside `[startsAt, endsAt)` the base is left as it is, so at `endsAt` the
 * owner falls back to a live subscription or to free; the lock set follows on the next read (its basis no
 * longer matches the limits, `OwnerAccess.read` repairs it: items lock, nothing is deleted).
 */

/** What the contract puts in force, named for explanations and the summary. */
export interface ContractInForce {
  readonly id: string;
  readonly startsAt: string;
  readonly endsAt: string;
  readonly billing: 'manual' | 'stripe_invoice';
  /** The contract's own limits, before any override on top. */
  readonly limits: PlanLimits;
}

/** The contract's limits: the enterprise plan's, replaced by each one the contract names; `seats` its own. */
export function contractLimits(contract: ContractState, catalog: Catalog): PlanLimits {
  const limits: Record<string, number | null> = { ...catalog.enterprise.limits };
  for (const [name, value] of Object.entries(contract.terms.limits))
    if (value !== undefined) limits[name] = value;
  return { ...(limits as PlanLimits), seats: contract.terms.seats };
}

export function contractFlags(contract: ContractState, catalog: Catalog): PlanFlags {
  const flags: Record<string, boolean> = { ...catalog.enterprise.flags };
  for (const [name, value] of Object.entries(contract.terms.flags))
    if (value !== undefined) flags[name] = value;
  return flags as PlanFlags;
}

/** `base` (from the subscription), or the contract's capabilities while it is active at `now`. */
export function withContract(
  base: BaseCapabilities,
  contract: ContractState | undefined,
  catalog: Catalog,
  now: Date,
): BaseCapabilities {
  if (!contractActive(contract, now)) return base;
  const status = contractPaymentStatus(contract, now);
  const accessLevel = accessLevelOf(status);
  const limits = contractLimits(contract, catalog);
  const flags = contractFlags(contract, catalog);
  const locked = accessLevel === 'locked';
  return {
    ownerId: base.ownerId,
    plan: 'enterprise',
    status,
    accessLevel,
    // The self-serve subscription does not govern while the contract does (its period, interval and
    // scheduled changes are not the owner's terms now).
    subscription: undefined,
    limits: locked ? catalog.free.limits : limits,
    flags: locked ? catalog.free.flags : flags,
    planLimits: limits,
    planFlags: flags,
    // Contract usage windows are calendar months in UTC, like owners without a paid period.
    period: calendarMonth(now),
    contract: {
      id: contract.id,
      startsAt: contract.terms.startsAt,
      endsAt: contract.terms.endsAt,
      billing: contract.terms.billing,
      limits,
    },
  };
}

/**
 * Whether the contract's terms in force differ between the instant a snapshot was read and `now` (it began
 * or ended, or an invoice fell past due or past its grace): then limits moved with time alone, and a kept
 * snapshot's lock set is for other limits. Readers that keep snapshots (metering) read afresh instead,
 * which repairs the lock set (`OwnerAccess.read`).
 */
export function contractMovedSince(snapshot: OwnerSnapshot, now: Date): boolean {
  const contract = snapshot.contract?.state;
  if (contract === undefined) return false;
  const then = snapshot.readAt;
  if (contractActive(contract, then) !== contractActive(contract, now)) return true;
  return (
    contractActive(contract, now) &&
    contractPaymentStatus(contract, then) !== contractPaymentStatus(contract, now)
  );
}
