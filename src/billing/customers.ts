import { z } from 'zod';
import type { OwnerId } from './ids.js';
import type { PaymentsGateway } from './payments.js';
import { EntityExistsError, type EntityTable } from './store.js';

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
}): Customers {
  const { table, payments } = deps;

  const customerOf = async (ownerId: OwnerId) => {
    const row = await table.get(ownerId, CUSTOMER_ROW);
    return row ? rowSchema.parse(row.props).customerId : undefined;
  };

  return {
    customerOf,
    async ownerOf(customerId) {
      const row = await table.get(`customer:${customerId}`, 'ref');
      return row ? indexSchema.parse(row.props).ownerId : undefined;
    },
    async ensure(ownerId) {
      const existing = await customerOf(ownerId);
      if (existing) return existing;
      // The idempotency key makes concurrent creators (two tabs, a retry) get the same Stripe customer.
      const { id } = await payments.createCustomer({ ownerId, idempotencyKey: `customer-${ownerId}` });
      // Index first: a webhook for this customer can arrive as soon as checkout starts.
      await table.upsert(`customer:${id}`, 'ref', { ownerId });
      try {
        await table.create(ownerId, CUSTOMER_ROW, { customerId: id });
        return id;
      } catch (error) {
        if (!(error instanceof EntityExistsError)) throw error;
        // Someone else stored the mapping first; theirs wins, so the owner keeps exactly one customer.
        const winner = await customerOf(ownerId);
        if (!winner) throw error;
        return winner;
      }
    },
  };
}
