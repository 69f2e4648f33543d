import type { SubscriptionStatus } from '../subscription.js';

/**
 * What a payment state means for access (ARCHITECTURE.md, Entitlements). Its own module so that the
 * usage window (`periods.ts`) can ask it without importing the capabilities that import the window.
 * `capabilities.ts` re-exports it: that is where callers look for it.
 */
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
