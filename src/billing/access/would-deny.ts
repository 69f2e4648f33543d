import { randomBytes } from 'node:crypto';
import type { TransactionAction } from '../store.js';
import type { WouldDeny } from './decide.js';

/**
 * A denial that `monitor` (or a payment grace period) let through, as an append-only row in the
 * owner's partition (`monitor|<at>|<suffix>`), for rolling out a limit and for the owner's trail.
 * Created in the same transaction as the change it allowed, or on its own for a check.
 */
export function wouldDenyAction(
  wouldDeny: WouldDeny,
  context: { readonly subject: unknown; readonly at: string },
): TransactionAction {
  const { decision, why, quantity } = wouldDeny;
  return {
    kind: 'create',
    // The random suffix keeps concurrent records from colliding.
    rowKey: `monitor|${context.at}|${randomBytes(6).toString('hex')}`,
    props: {
      feature: decision.feature,
      reason: decision.reason,
      why,
      limit: decision.limit ?? -1,
      used: decision.used ?? -1,
      quantity,
      subject: JSON.stringify(context.subject),
      at: context.at,
    },
  };
}
