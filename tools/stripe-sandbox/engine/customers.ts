import { buildCustomer } from '../objects.js';
import type { MetadataParam } from '../params.js';
import { ids, type WireCustomer } from '../wire.js';
import { freshMetadata, snap } from './changes.js';
import type { Events } from './events.js';
import { type EngineState, found, type RequestContext } from './state.js';

export type Customers = ReturnType<typeof createCustomers>;

/** Customers, their one card each, and whether that card declines (a sandbox control). */
export function createCustomers(state: EngineState, events: Events) {
  const { customers, failingCustomers, paymentMethods } = state;
  const { publish } = events;

  function customer(id: string, param?: string): WireCustomer {
    return found(customers, 'customer', id, param);
  }

  function paymentMethodOf(customerId: string): string {
    let pm = paymentMethods.get(customerId);
    if (!pm) {
      pm = ids.paymentMethod();
      paymentMethods.set(customerId, pm);
    }
    return pm;
  }

  function createCustomer(
    params: { email?: string; name?: string; description?: string; phone?: string; metadata?: MetadataParam },
    ctx: RequestContext,
  ): WireCustomer {
    const cust = buildCustomer({
      id: ids.customer(),
      created: state.now,
      email: params.email ?? null,
      name: params.name ?? null,
      description: params.description ?? null,
      phone: params.phone ?? null,
      metadata: freshMetadata(params.metadata),
    });
    customers.set(cust.id, cust);
    publish(ctx, [snap('customer.created', cust)]);
    return cust;
  }

  function setPaymentMethod(customerId: string, fails: boolean): void {
    customer(customerId);
    if (fails) failingCustomers.add(customerId);
    else failingCustomers.delete(customerId);
  }

  return {
    customer,
    byId: (id: string): WireCustomer | undefined => customers.get(id),
    paymentMethodOf,
    createCustomer,
    setPaymentMethod,
  };
}
