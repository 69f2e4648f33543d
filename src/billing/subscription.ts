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
});
export type SubscriptionState = z.infer<typeof subscriptionStateSchema>;

export const SUBSCRIPTION_ROW = 'subscription';

export interface Subscriptions {
  /** `undefined` when the owner never subscribed: they are on the free plan. */
  get(ownerId: OwnerId): Promise<SubscriptionState | undefined>;
}

export function createSubscriptions(table: EntityTable): Subscriptions {
  return {
    async get(ownerId) {
      const row = await table.get(ownerId, SUBSCRIPTION_ROW);
      if (!row) return undefined;
      const parsed = subscriptionStateSchema.safeParse(row.props);
      if (!parsed.success) {
        throw new Error(`Corrupt subscription row for ${ownerId}: ${z.prettifyError(parsed.error)}`);
      }
      return parsed.data;
    },
  };
}
