import { INTERVALS, PLAN_NAMES } from '../billing/catalog.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** The public catalog: what each plan gives. Stripe identifiers stay server-side. */
export const plans = defineRoute({
  name: 'plans',
  methods: ['GET'],
  route: 'plans',
  access: 'anonymous',
  async handle({ services, invocation }) {
    // Prices are live from Stripe through the table cache; if Stripe fails they are served stale, and with
    // no cache at all the limits are still served (pricing.status says which).
    const pricing = await services.pricing.current().catch((error: unknown) => {
      invocation.warn('pricing unavailable', error);
      return undefined;
    });
    const body = {
      pricing: pricing
        ? { status: pricing.stale ? 'stale' : 'live', fetchedAt: pricing.fetchedAt.toISOString() }
        : { status: 'unavailable', fetchedAt: null },
      plans: PLAN_NAMES.map((name) => {
        const plan = services.catalog[name];
        const priceOf = (interval: (typeof INTERVALS)[number]) => {
          const key = plan.prices?.[interval].lookupKey;
          const live = key ? pricing?.prices.get(key) : undefined;
          return live && live.unitAmount !== null
            ? { amount: live.unitAmount, currency: live.currency }
            : null;
        };
        return {
          name: plan.name,
          displayName: plan.displayName,
          perSeat: plan.perSeat,
          selfServe: plan.selfServe,
          intervals: plan.prices ? [...INTERVALS] : [],
          prices: plan.prices ? { monthly: priceOf('monthly'), yearly: priceOf('yearly') } : null,
          limits: plan.limits,
          flags: plan.flags,
        };
      }),
    };
    // Cache a live answer for five minutes; a stale or price-less one only briefly, so it heals quickly.
    const maxAge = body.pricing.status === 'live' ? 300 : 30;
    return json(200, body, { 'cache-control': `public, max-age=${maxAge}` });
  },
});

registerHttp(plans);
