import { describe, expect, it } from 'vitest';
import {
  catalog,
  FLAG_NAMES,
  INTERVALS,
  LIMIT_NAMES,
  PLAN_NAMES,
  parseCatalog,
} from '../../src/billing/catalog.js';

describe('plan catalog', () => {
  it('declares every plan with every limit and flag', () => {
    for (const name of PLAN_NAMES) {
      expect(Object.keys(catalog[name].limits).sort()).toEqual([...LIMIT_NAMES].sort());
      expect(Object.keys(catalog[name].flags).sort()).toEqual([...FLAG_NAMES].sort());
    }
  });

  it('names a Stripe price by lookup key for each paid plan and interval', () => {
    for (const name of PLAN_NAMES.filter((n) => n !== 'free')) {
      for (const interval of INTERVALS)
        expect(catalog[name].prices?.[interval].lookupKey).toBe(`${name}_${interval}`);
    }
    expect(catalog.free.prices).toBeNull();
  });

  it('orders plans so that each paid plan gives at least what the one below gives', () => {
    const order = ['free', 'pro', 'team', 'enterprise'] as const;
    for (let i = 1; i < order.length; i++) {
      const [lower, higher] = [catalog[order[i - 1] ?? 'free'], catalog[order[i] ?? 'free']];
      for (const limit of LIMIT_NAMES.filter((l) => l !== 'seats')) {
        const [a, b] = [lower.limits[limit], higher.limits[limit]];
        if (a === null) expect(b).toBeNull();
        else if (b !== null) expect(b).toBeGreaterThanOrEqual(a);
      }
      for (const flag of FLAG_NAMES) if (lower.flags[flag]) expect(higher.flags[flag]).toBe(true);
    }
  });

  it('refuses a broken catalog at load, naming the field', () => {
    const broken = structuredClone({
      ...catalog,
      pro: { ...catalog.pro, limits: { ...catalog.pro.limits, workflows: -1 } },
    });
    expect(() => parseCatalog(broken)).toThrow(/pro\.limits\.workflows/);
    const duplicateKey = structuredClone(catalog) as unknown as {
      team: { prices: { monthly: { lookupKey: string } } };
    };
    duplicateKey.team.prices.monthly.lookupKey = 'pro_monthly';
    expect(() => parseCatalog(duplicateKey)).toThrow(/duplicate lookup key pro_monthly/);
    const perOrgAboveTotal = structuredClone({
      ...catalog,
      free: { ...catalog.free, limits: { ...catalog.free.limits, workflows_per_org: 1000 } },
    });
    expect(() => parseCatalog(perOrgAboveTotal)).toThrow(/cannot exceed the total/);
  });
});
