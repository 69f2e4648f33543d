import { z } from 'zod';
import { auditAction } from './audit/entry.js';
import { type Clock, systemClock } from './clock.js';
import type { OwnerId } from './ids.js';
import { LruMap } from './lru.js';
import type { PaymentsGateway } from './payments.js';
import { type EntityTable, TransactionFailedError } from './store.js';

/**
 * One Stripe customer per billing owner, mapped both ways: `customer` in the owner's partition and
 * `customer:<id>/ref` -> owner, so a webhook (which names only the customer) finds its owner in one read.
 */
export interface Customers {
  customerOf(ownerId: OwnerId): Promise<string | undefined>;
  ownerOf(customerId: string): Promise<OwnerId | undefined>;
  /** The owner's customer, created on first need. Concurrent calls create one customer. */
  ensure(ownerId: OwnerId): Promise<string>;
}

const CUSTOMER_ROW = 'customer';
const rowSchema = z.object({ customerId: z.string() });
const indexSchema = z.object({ ownerId: z.string() });

export function createCustomers(deps: {
  readonly table: EntityTable;
  readonly payments: PaymentsGateway;
  /** For the audit row of a new link. @default systemClock */
  readonly clock?: Clock;
}): Customers {
  const { table, payments } = deps;
  const clock = deps.clock ?? systemClock;
  // A customer's owner never changes (one customer per owner, created under the owner's idempotency key),
  // so a mapping once read is remembered: each event of a known customer saves a round trip. Absence is
  // never remembered: an operator may link a customer later and replay its events.
  const owners = new LruMap<string, OwnerId>(100_000);

  const customerOf = async (ownerId: OwnerId) => {
    const row = await table.get(ownerId, CUSTOMER_ROW);
    return row ? rowSchema.parse(row.props).customerId : undefined;
  };

  return {
    customerOf,
    async ownerOf(customerId) {
      const known = owners.get(customerId);
      if (known !== undefined) return known;
      const row = await table.get(`customer:${customerId}`, 'ref');
      const ownerId = row ? indexSchema.parse(row.props).ownerId : undefined;
      if (ownerId !== undefined) owners.set(customerId, ownerId);
      return ownerId;
    },
    async ensure(ownerId) {
      const existing = await customerOf(ownerId);
      if (existing) return existing;
      // The idempotency key makes concurrent creators (two tabs, a retry) get the same Stripe customer.
      const { id } = await payments.createCustomer({ ownerId, idempotencyKey: `customer-${ownerId}` });
      // Index first: a webhook for this customer can arrive as soon as checkout starts.
      await table.upsert(`customer:${id}`, 'ref', { ownerId });
      try {
        // The payer link is billing state: audited with it. The customer id names the cause, since only the
        // billing owner's own requests (checkout, portal, credit checkout) create a customer.
        await table.transact(ownerId, [
          { kind: 'create', rowKey: CUSTOMER_ROW, props: { customerId: id } },
          auditAction(
            {
              at: clock.now().toISOString(),
              kind: 'customer_linked',
              actor: { kind: 'user', id: ownerId },
              cause: { kind: 'action', id: `customer-${id}`, type: 'customer.create' },
              before: null,
              after: { customerId: id },
            },
            `customer-${id}`,
          ),
        ]);
        return id;
      } catch (error) {
        if (
          !(error instanceof TransactionFailedError && error.actionIndex === 0 && error.reason === 'exists')
        )
          throw error;
        // Someone else stored the mapping first; theirs wins, so the owner keeps exactly one customer.
        const winner = await customerOf(ownerId);
        if (!winner) throw error;
        return winner;
      }
    },
  };
}
