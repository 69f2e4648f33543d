import { z } from 'zod';
import { INTERVALS, PLAN_NAMES } from './catalog.js';
import type { OwnerId } from './ids.js';

/**
 * The subscription state used for gating, one row per billing owner (`s|o|sub` in the owner's snapshot,
 * `owner/keys.ts`). Stripe webhooks write it (`lifecycle.ts`); decisions only read it.
 */
export const SUBSCRIPTION_STATUSES = [
  'trialing',
  'active',
  /** A renewal payment failed and Stripe is retrying it: nothing changes for the customer yet. */
  'retrying',
  /** Retries are exhausted but the grace window is open: limits become soft. */
  'grace',
  'past_due',
  'unpaid',
  'paused',
  'incomplete',
  'canceled',
] as const;
export type SubscriptionStatus = (typeof SUBSCRIPTION_STATUSES)[number];

/** Our statuses under which an owner holds (or is owed) a paid plan: every one but `canceled`. */
export const LIVE_STATUSES: ReadonlySet<string> = new Set<SubscriptionStatus>(
  SUBSCRIPTION_STATUSES.filter((status) => status !== 'canceled'),
);

/** What a payment state means for access: `access/capabilities.ts` (`accessLevelOf`), the one place. */
export type { AccessLevel } from './access/capabilities.js';

const isoDate = z.iso.datetime({ offset: true });

export const subscriptionStateSchema = z.object({
  plan: z.enum(PLAN_NAMES),
  interval: z.enum(INTERVALS),
  status: z.enum(SUBSCRIPTION_STATUSES),
  /** Subscription quantity for per-seat plans; 1 otherwise. */
  seats: z.number().int().positive(),
  currentPeriodStart: isoDate,
  currentPeriodEnd: isoDate,
  /**
   * Stripe's billing cycle anchor: usage windows are calendar-like months stepped from it (every month of
   * a yearly plan; and past `currentPeriodEnd` until the renewal is known). Absent on older rows: the
   * period start stands in for it.
   */
  billingCycleAnchor: isoDate.optional(),
  cancelAtPeriodEnd: z.boolean(),
  updatedAt: isoDate,
  /** Where the state came from; absent only for rows written by hand (tests, admin repair). */
  stripeSubscriptionId: z.string().optional(),
  stripeCustomerId: z.string().optional(),
  stripeStatus: z.string().optional(),
  /** Failed automatic attempts on the latest invoice; drives retrying -> grace -> locked. */
  paymentAttempts: z.number().int().nonnegative().optional(),
  /** A downgrade waiting for the period end (shown in the summary as `scheduledChange`). */
  scheduledPlan: z.enum(PLAN_NAMES).optional(),
  scheduledInterval: z.enum(INTERVALS).optional(),
  scheduledSeats: z.number().int().positive().optional(),
  scheduledAt: isoDate.optional(),
});
export type SubscriptionState = z.infer<typeof subscriptionStateSchema>;

export function parseSubscriptionRow(ownerId: OwnerId, props: unknown): SubscriptionState {
  const parsed = subscriptionStateSchema.safeParse(props);
  if (!parsed.success) {
    throw new Error(`Corrupt subscription row for ${ownerId}: ${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}

/** Table rows cannot hold `undefined`; optional fields are left out instead. */
export function subscriptionProps(state: SubscriptionState): Record<string, string | number | boolean> {
  const props: Record<string, string | number | boolean> = {};
  for (const [key, value] of Object.entries(state)) if (value !== undefined) props[key] = value;
  return props;
}
