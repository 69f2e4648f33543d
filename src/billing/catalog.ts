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

/* ------------------------------------------------------------------------------------------------ */
/* Meters and credit packs                                                                            */
/* ------------------------------------------------------------------------------------------------ */

/** Consumable meters: each has one counter row per owner and usage period (`src/billing/metering.ts`). */
export const METER_NAMES = ['executions'] as const;
export type MeterName = (typeof METER_NAMES)[number];

/** Limits that are consumed per usage period, so they can be a meter's allowance; the rest are allocations. */
const PERIOD_LIMITS = ['executions'] as const satisfies readonly LimitName[];

const meterSchema = z.strictObject({
  name: z.enum(METER_NAMES),
  displayName: z.string().min(1),
  /** Singular unit, for messages and invoices ("execution"). */
  unit: z.string().min(1),
  /** The plan limit that is this meter's allowance per period (`null` in a plan: unlimited). */
  allowanceLimit: z.enum(PERIOD_LIMITS),
  /**
   * The window the allowance applies to. `billing_period`: for a paid plan, months stepped from the
   * billing cycle anchor (a monthly plan's stored period; each month of a yearly plan; on past a late
   * renewal), the calendar month in UTC otherwise; `currentPeriod()` in `periods.ts` computes it.
   */
  window: z.literal('billing_period'),
  /** Whether purchased credits cover consumption beyond the allowance. */
  drawsCredits: z.boolean(),
});

export type MeterDefinition = z.infer<typeof meterSchema>;
export type Meters = Readonly<Record<MeterName, MeterDefinition>>;

const metersSchema = z
  .strictObject(
    Object.fromEntries(METER_NAMES.map((n) => [n, meterSchema])) as Record<MeterName, typeof meterSchema>,
  )
  .superRefine((meters, ctx) => {
    for (const name of METER_NAMES) {
      if (meters[name].name !== name) {
        ctx.addIssue({ code: 'custom', path: [name, 'name'], message: `must be "${name}"` });
      }
    }
  });

/**
 * Validates the meter declarations. Exported so tests can prove a broken declaration is refused at load.
 * @throws Error naming every invalid field
 */
export function parseMeters(input: unknown): Meters {
  const result = metersSchema.safeParse(input);
  if (!result.success) throw new Error(`Invalid meters:\n${z.prettifyError(result.error)}`);
  return Object.freeze(result.data);
}

/** The meters of record. */
export const METERS: Meters = parseMeters({
  executions: {
    name: 'executions',
    displayName: 'Workflow executions',
    unit: 'execution',
    allowanceLimit: 'executions',
    window: 'billing_period',
    drawsCredits: true,
  },
});

export function isMeterName(name: string): name is MeterName {
  return (METER_NAMES as readonly string[]).includes(name);
}

/** A meter's allowance per period under the given limits (`Capabilities.limits`); `null` is unlimited. */
export function meterAllowance(limits: PlanLimits, meter: MeterName): number | null {
  return limits[METERS[meter].allowanceLimit];
}

const creditPackSchema = z.strictObject({
  /** Stable id, used in checkout requests and in the checkout session's metadata. */
  id: z.string().regex(/^[a-z0-9_]+$/),
  displayName: z.string().min(1),
  /** Credits granted once the payment succeeds; each covers one unit of a meter beyond its allowance. */
  credits: z.number().int().positive(),
  /** Stripe price lookup key of the one-time price (Checkout in `payment` mode). */
  lookupKey: z.string().regex(/^[a-z0-9_]+$/),
  /** Reference amount in the smallest currency unit, used to seed the local sandbox. */
  unitAmount: z.number().int().positive(),
  currency: z.string().regex(/^[a-z]{3}$/),
});

export type CreditPack = z.infer<typeof creditPackSchema>;

/**
 * Validates the credit packs: unique ids and lookup keys, none shared with a plan price.
 * @throws Error naming every invalid field
 */
export function parseCreditPacks(input: unknown, plans: Catalog = catalog): readonly CreditPack[] {
  const planKeys = new Set(
    PLAN_NAMES.flatMap((name) => INTERVALS.map((i) => plans[name].prices?.[i].lookupKey ?? '')),
  );
  const result = z
    .array(creditPackSchema)
    .min(1)
    .superRefine((packs, ctx) => {
      const ids = new Set<string>();
      const keys = new Set<string>();
      packs.forEach((pack, index) => {
        if (ids.has(pack.id)) {
          ctx.addIssue({ code: 'custom', path: [index, 'id'], message: `duplicate id ${pack.id}` });
        }
        if (keys.has(pack.lookupKey) || planKeys.has(pack.lookupKey)) {
          ctx.addIssue({
            code: 'custom',
            path: [index, 'lookupKey'],
            message: `duplicate lookup key ${pack.lookupKey}`,
          });
        }
        ids.add(pack.id);
        keys.add(pack.lookupKey);
      });
    })
    .safeParse(input);
  if (!result.success) throw new Error(`Invalid credit packs:\n${z.prettifyError(result.error)}`);
  return Object.freeze(result.data.map((pack) => Object.freeze(pack)));
}

/** One-time credit packs, bought through Stripe Checkout in `payment` mode; smallest first. */
export const CREDIT_PACKS: readonly CreditPack[] = parseCreditPacks([
  {
    id: 'credits_5k',
    displayName: '5,000 execution credits',
    credits: 5_000,
    lookupKey: 'credits_5k',
    unitAmount: 1_000,
    currency: 'usd',
  },
  {
    id: 'credits_50k',
    displayName: '50,000 execution credits',
    credits: 50_000,
    lookupKey: 'credits_50k',
    unitAmount: 8_000,
    currency: 'usd',
  },
]);

/** The pack with this id, or `undefined` (an unknown id in a request is a 400, decided by the caller). */
export function creditPack(id: string): CreditPack | undefined {
  return CREDIT_PACKS.find((pack) => pack.id === id);
}

/** The pack sold under this Stripe price lookup key, for mapping a completed checkout back to credits. */
export function creditPackByLookupKey(lookupKey: string): CreditPack | undefined {
  return CREDIT_PACKS.find((pack) => pack.lookupKey === lookupKey);
}
