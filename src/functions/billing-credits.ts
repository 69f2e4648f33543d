import { z } from 'zod';
import { CREDIT_PACKS } from '../billing/catalog.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { tenantOf } from '../http/tenant.js';

/** The credit balance and the packs on sale; for the billing owner also the ledger (newest first). */
export const billingCredits = defineRoute({
  name: 'billingCredits',
  methods: ['GET'],
  route: 'billing/credits',
  access: 'user',
  async handle({ services, principal }) {
    const { ownerId } = await tenantOf(principal, services.directory);
    // The ledger names runs across all of the owner's organizations: only the owner sees it.
    const isOwner = ownerId === principal.userId;
    const [balance, ledger] = await Promise.all([
      services.credits.balance(ownerId),
      isOwner ? services.credits.ledger(ownerId, { limit: 100 }) : Promise.resolve(null),
    ]);
    const packs = CREDIT_PACKS.map(({ id, displayName, credits, unitAmount, currency }) => ({
      id,
      displayName,
      credits,
      amount: unitAmount,
      currency,
    }));
    return json(200, { balance, ledger, packs });
  },
});

const buyBody = z.strictObject({ pack: z.string().min(1).max(64) });

/** Checkout for a one-time credit pack; the credits arrive with Stripe's confirmation, exactly once. */
export const creditsCheckout = defineRoute({
  name: 'creditsCheckout',
  methods: ['POST'],
  route: 'billing/credits/checkout',
  access: 'user',
  async handle({ request, services, principal }) {
    const { ownerId } = await requireBillingOwner(principal, services.directory);
    const body = await readJson(request, buyBody, services.config.maxBodyBytes);
    return json(201, await services.actions.buyCredits({ ownerId, packId: body.pack }));
  },
});

registerHttp(billingCredits);
registerHttp(creditsCheckout);
