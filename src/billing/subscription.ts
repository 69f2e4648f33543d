import { z } from 'zod';
import { INTERVALS, PLAN_NAMES } from './catalog.js';
import type { OwnerId } from './ids.js';
import type { EntityTable } from './store.js';

/**
 * The subscription state used for gating, one row per billing owner (`subscription` in the owner's
 * partition of the `billing` table). Stripe webhooks write it; entitlements only read it.
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

/** What a payment state means for access (ARCHITECTURE.md, Entitlements). */
export type AccessLevel = 'full' | 'grace' | 'locked' | 'free';

export function accessLevelOf(status: SubscriptionStatus | 'none'): AccessLevel {
  switch (status) {
    case 'trialing':
    case 'active':
    case 'retrying':
      return 'full';
    case 'grace':
      return 'grace';
    case 'past_due':
    case 'unpaid':
    case 'paused':
      return 'locked';
    case 'incomplete':
    case 'canceled':
    case 'none':
      return 'free';
  }
}

const isoDate = z.iso.datetime({ offset: true });

export const subscriptionStateSchema = z.object({
  plan: z.enum(PLAN_NAMES),
  interval: z.enum(INTERVALS),
  status: z.enum(SUBSCRIPTION_STATUSES),
  /** Subscription quantity for per-seat plans; 1 otherwise. */
  seats: z.number().int().positive(),
  currentPeriodStart: isoDate,
  currentPeriodEnd: isoDate,
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

export const SUBSCRIPTION_ROW = 'subscription';

export interface Subscriptions {
  /** `undefined` when the owner never subscribed: they are on the free plan. */
  get(ownerId: OwnerId): Promise<SubscriptionState | undefined>;
  /** The state with the row's etag, for conditional writes. */
  getVersioned(ownerId: OwnerId): Promise<{ state: SubscriptionState; etag: string } | undefined>;
}

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

export function createSubscriptions(table: EntityTable): Subscriptions {
  const getVersioned = async (ownerId: OwnerId) => {
    const row = await table.get(ownerId, SUBSCRIPTION_ROW);
    return row ? { state: parseSubscriptionRow(ownerId, row.props), etag: row.etag } : undefined;
  };
  return {
    getVersioned,
    async get(ownerId) {
      return (await getVersioned(ownerId))?.state;
    },
  };
}
