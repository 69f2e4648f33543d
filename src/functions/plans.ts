import { INTERVALS, PLAN_NAMES } from '../billing/catalog.js';
import { registerHttp } from '../http/register.js';
import { defineRoute, json } from '../http/route.js';

/** The public catalog: what each plan gives. Stripe identifiers stay server-side. */
export const plans = defineRoute({
  name: 'plans',
  methods: ['GET'],
  route: 'plans',
  access: 'anonymous',
  async handle({ services }) {
    const body = {
      plans: PLAN_NAMES.map((name) => {
        const plan = services.catalog[name];
        return {
          name: plan.name,
          displayName: plan.displayName,
          perSeat: plan.perSeat,
          selfServe: plan.selfServe,
          intervals: plan.prices ? [...INTERVALS] : [],
          limits: plan.limits,
          flags: plan.flags,
        };
      }),
    };
    return json(200, body, { 'cache-control': 'public, max-age=300' });
  },
});

registerHttp(plans);
