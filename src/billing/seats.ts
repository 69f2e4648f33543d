import type { Plan } from './catalog.js';
import { BillingError } from './errors.js';
import { type OwnerSnapshot, seatsInUse } from './owner/snapshot.js';

/**
 * Seats of per-seat plans (`team`, `enterprise`): what is billed follows the people in the owner's
 * organizations. Pure: the sync (`seat-sync.ts`), checkout and plan changes all compute the Stripe
 * quantity here, so they can never disagree about it.
 */

/** Distinct people across the owner's organizations, the owner included (the count rows, never a scan). */
export const billableSeats = (snapshot: OwnerSnapshot): number => seatsInUse(snapshot);

/**
 * The subscription quantity a per-seat plan bills for `billable` people: never fewer than the seats the
 * plan includes (the price of the plan covers them). Plans without included seats (enterprise, whose
 * seats come from a contract) bill at least one.
 */
export function perSeatQuantity(plan: Pick<Plan, 'limits'>, billable: number): number {
  return Math.max(plan.limits.seats ?? 1, billable, 1);
}

/** The quantity a plan bills: per-seat plans follow the people, others are one subscription. */
export function quantityFor(plan: Pick<Plan, 'limits' | 'perSeat'>, billable: number): number {
  return plan.perSeat ? perSeatQuantity(plan, billable) : 1;
}

/**
 * The owner's cap: a member who would be a new person past `maxSeats` is refused (402
 * `seat_cap_reached`), so an owner can bound what per-seat billing costs. Without a cap nobody is
 * refused for lack of seats on a per-seat plan; people are billed instead.
 */
export function seatCapRefusal(snapshot: OwnerSnapshot, newSeat: boolean): BillingError | undefined {
  const cap = snapshot.seatCap.maxSeats;
  if (!newSeat || cap === null) return undefined;
  const used = billableSeats(snapshot);
  if (used + 1 <= cap) return undefined;
  return new BillingError(
    'payment_required',
    'seat_cap_reached',
    `The billing owner capped seats at ${cap}; ${used} in use. Raise the cap with PUT /api/billing/seats, or remove someone first. Nothing was written.`,
    undefined,
    undefined,
    { extensions: { feature: 'seats', limit: cap, used, remaining: Math.max(0, cap - used) } },
  );
}
