import { z } from 'zod';

/**
 * The plan catalog: the one place where plans, their limits, flags and Stripe prices are declared.
 * Everything else (entitlements, the public `/api/plans`, the Stripe sandbox seed, tests) reads it
 * from here, so a number changes in one place only.
 */

export const PLAN_NAMES = ['free', 'pro', 'team', 'enterprise'] as const;
export type PlanName = (typeof PLAN_NAMES)[number];

export const INTERVALS = ['monthly', 'yearly'] as const;
export type Interval = (typeof INTERVALS)[number];

/** Limits that cap a count or a size. `executions` is consumed per period; the rest are allocations. */
export const LIMIT_NAMES = [
  'executions',
  'workflows',
  'workflows_per_org',
  'credentials',
  'nodes_per_workflow',
  'seats',
] as const;
export type LimitName = (typeof LIMIT_NAMES)[number];

export const FLAG_NAMES = [
  'ai_nodes',
  'premium_triggers',
  'premium_actions',
  'white_label',
  'custom_domains',
] as const;
export type FlagName = (typeof FLAG_NAMES)[number];

export const FEATURE_NAMES = [...LIMIT_NAMES, ...FLAG_NAMES] as const;
export type FeatureName = LimitName | FlagName;

export function isLimitName(feature: string): feature is LimitName {
  return (LIMIT_NAMES as readonly string[]).includes(feature);
}

export function isFlagName(feature: string): feature is FlagName {
  return (FLAG_NAMES as readonly string[]).includes(feature);
}

/** `null` means unlimited. */
const limitValue = z.number().int().nonnegative().nullable();

const priceSchema = z.strictObject({
  /** Stripe price lookup key; the gateway resolves it to a price id, so renamed prices keep working. */
  lookupKey: z.string().regex(/^[a-z0-9_]+$/),
  /** Reference amount in the smallest currency unit, used to seed the local sandbox and to detect tiers. */
  unitAmount: z.number().int().positive(),
  currency: z.string().length(3),
});

const planSchema = z.strictObject({
  name: z.enum(PLAN_NAMES),
  displayName: z.string().min(1),
  /** Team and enterprise plans are billed per seat; the subscription quantity is the seat count. */
  perSeat: z.boolean(),
  /** Enterprise is sold by contract, never through self-serve checkout. */
  selfServe: z.boolean(),
  limits: z.strictObject(
    Object.fromEntries(LIMIT_NAMES.map((n) => [n, limitValue])) as Record<LimitName, typeof limitValue>,
  ),
  flags: z.strictObject(
    Object.fromEntries(FLAG_NAMES.map((n) => [n, z.boolean()])) as Record<FlagName, z.ZodBoolean>,
  ),
  /** Free has no prices; each paid plan prices both intervals. */
  prices: z.strictObject({ monthly: priceSchema, yearly: priceSchema }).nullable(),
});

export type Plan = z.infer<typeof planSchema>;
export type PlanLimits = Plan['limits'];
export type PlanFlags = Plan['flags'];
export type Catalog = Readonly<Record<PlanName, Plan>>;

const catalogSchema = z
  .strictObject(
    Object.fromEntries(PLAN_NAMES.map((n) => [n, planSchema])) as Record<PlanName, typeof planSchema>,
  )
  .superRefine((catalog, ctx) => {
    const lookupKeys = new Set<string>();
    for (const name of PLAN_NAMES) {
      const plan = catalog[name];
      if (plan.name !== name) {
        ctx.addIssue({ code: 'custom', path: [name, 'name'], message: `must be "${name}"` });
      }
      if ((plan.prices === null) !== (name === 'free')) {
        ctx.addIssue({ code: 'custom', path: [name, 'prices'], message: 'only the free plan has no prices' });
      }
      for (const interval of INTERVALS) {
        const key = plan.prices?.[interval].lookupKey;
        if (key === undefined) continue;
        if (lookupKeys.has(key)) {
          ctx.addIssue({
            code: 'custom',
            path: [name, 'prices', interval],
            message: `duplicate lookup key ${key}`,
          });
        }
        lookupKeys.add(key);
      }
      const { workflows, workflows_per_org } = plan.limits;
      if (workflows !== null && (workflows_per_org === null || workflows_per_org > workflows)) {
        ctx.addIssue({
          code: 'custom',
          path: [name, 'limits', 'workflows_per_org'],
          message: 'cannot exceed the total workflows limit',
        });
      }
    }
  });

/**
 * Validates a catalog. Exported so tests can prove a broken catalog is refused at load.
 * @throws Error naming every invalid field
 */
export function parseCatalog(input: unknown): Catalog {
  const result = catalogSchema.safeParse(input);
  if (!result.success) {
    throw new Error(`Invalid plan catalog:\n${z.prettifyError(result.error)}`);
  }
  return Object.freeze(result.data);
}

const usd = (unitAmount: number, lookupKey: string) => ({ lookupKey, unitAmount, currency: 'usd' });

/**
 * The catalog of record. Yearly prices are ten months' worth (two months free).
 * Seats: for free and pro, the most people (owner included) across the owner's organizations; for
 * team, the seats included before per-seat billing adds more; enterprise seats come from the contract.
 */
export const catalog: Catalog = parseCatalog({
  free: {
    name: 'free',
    displayName: 'Free',
    perSeat: false,
    selfServe: true,
    limits: {
      executions: 1_000,
      workflows: 10,
      workflows_per_org: 5,
      credentials: 10,
      nodes_per_workflow: 25,
      seats: 2,
    },
    flags: {
      ai_nodes: false,
      premium_triggers: false,
      premium_actions: false,
      white_label: false,
      custom_domains: false,
    },
    prices: null,
  },
  pro: {
    name: 'pro',
    displayName: 'Pro',
    perSeat: false,
    selfServe: true,
    limits: {
      executions: 10_000,
      workflows: 100,
      workflows_per_org: 50,
      credentials: 100,
      nodes_per_workflow: 100,
      seats: 5,
    },
    flags: {
      ai_nodes: true,
      premium_triggers: true,
      premium_actions: false,
      white_label: false,
      custom_domains: false,
    },
    prices: { monthly: usd(2_400, 'pro_monthly'), yearly: usd(24_000, 'pro_yearly') },
  },
  team: {
    name: 'team',
    displayName: 'Team',
    perSeat: true,
    selfServe: true,
    limits: {
      executions: 50_000,
      workflows: 500,
      workflows_per_org: 250,
      credentials: 500,
      nodes_per_workflow: 250,
      seats: 3,
    },
    flags: {
      ai_nodes: true,
      premium_triggers: true,
      premium_actions: true,
      white_label: false,
      custom_domains: true,
    },
    prices: { monthly: usd(1_500, 'team_monthly'), yearly: usd(15_000, 'team_yearly') },
  },
  enterprise: {
    name: 'enterprise',
    displayName: 'Enterprise',
    perSeat: true,
    selfServe: false,
    limits: {
      executions: null,
      workflows: null,
      workflows_per_org: null,
      credentials: null,
      nodes_per_workflow: null,
      seats: null,
    },
    flags: {
      ai_nodes: true,
      premium_triggers: true,
      premium_actions: true,
      white_label: true,
      custom_domains: true,
    },
    prices: { monthly: usd(4_000, 'enterprise_monthly'), yearly: usd(40_000, 'enterprise_yearly') },
  },
});
