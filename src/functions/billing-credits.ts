import { z } from 'zod';
import { CREDIT_PACKS } from '../billing/catalog.js';
import {
  type Credits,
  DEFAULT_LEDGER_LIMIT,
  LEDGER_PAGE_MAX,
  LedgerCursorError,
  type LedgerPage,
} from '../billing/credits.js';
import { validationError } from '../billing/errors.js';
import { requireBillingOwner } from '../http/billing-owner.js';
import { parseInput, readJson } from '../http/body.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';
import { tenantOf } from '../http/tenant.js';

const ledgerQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(LEDGER_PAGE_MAX).default(DEFAULT_LEDGER_LIMIT),
  cursor: z.string().min(1).max(2048).optional(),
});

/**
 * The credit balance and the packs on sale; for the billing owner also one page of the ledger (newest
 * first), with `nextCursor` for the next, older page.
 */
export const billingCredits = defineRoute({
  name: 'billingCredits',
  methods: ['GET'],
  route: 'billing/credits',
  access: 'user',
  async handle({ request, services, principal }) {
    const query = parseInput(
      ledgerQuery,
      Object.fromEntries(request.query),
      'invalid_query',
      'The query is invalid.',
    );
    const { ownerId } = await tenantOf(principal, services.directory);
    // The ledger names runs across all of the owner's organizations: only the owner sees it.
    const isOwner = ownerId === principal.userId;
    const [balance, page] = await Promise.all([
      services.credits.balance(ownerId),
      isOwner ? ledgerPage(services.credits, ownerId, query) : Promise.resolve(null),
    ]);
    const packs = CREDIT_PACKS.map(({ id, displayName, credits, unitAmount, currency }) => ({
      id,
      displayName,
      credits,
      amount: unitAmount,
      currency,
    }));
    return json(200, { balance, ledger: page?.entries ?? null, nextCursor: page?.nextCursor ?? null, packs });
  },
});

async function ledgerPage(
  credits: Credits,
  ownerId: string,
  query: z.infer<typeof ledgerQuery>,
): Promise<LedgerPage> {
  try {
    return await credits.ledgerPage(ownerId, {
      limit: query.limit,
      ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
    });
  } catch (error) {
    if (error instanceof LedgerCursorError) {
      throw validationError('invalid_query', `The query is invalid. cursor: ${error.message}`, [
        { path: 'cursor', message: error.message },
      ]);
    }
    throw error;
  }
}

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
