import { describe, expect, it } from 'vitest';
import { capabilitiesOf } from '../../src/billing/access/capabilities.js';
import { limitSource } from '../../src/billing/access/explain.js';
import { catalog } from '../../src/billing/catalog.js';
import type { ContractState } from '../../src/billing/contracts/model.js';
import type { SubscriptionState } from '../../src/billing/subscription.js';
import { NOW, terms } from '../support/contracts.js';

/** The order of the layers over a plan: the subscription's plan, an active contract in its place, overrides on top. */

const now = new Date(NOW);
const contract: ContractState = {
  id: 'ctr_1',
  terms: terms({ limits: { workflows_per_org: 20, credentials: 300 }, seats: 40 }),
  createdAt: NOW,
  updatedAt: NOW,
  updatedBy: 'ops_1',
  invoices: [],
};
const pro: SubscriptionState = {
  plan: 'pro',
  interval: 'monthly',
  status: 'active',
  seats: 1,
  currentPeriodStart: '2026-11-01T00:00:00.000Z',
  currentPeriodEnd: '2026-12-01T00:00:00.000Z',
  cancelAtPeriodEnd: false,
  updatedAt: NOW,
};

describe('capability layers', () => {
  it('an active contract replaces the subscription, and an override goes on top of the contract', () => {
    const caps = capabilitiesOf('alice', pro, catalog, now, {
      contract,
      overrides: { limits: { workflows_per_org: 75 }, flags: { white_label: true }, expiresAt: null },
    });
    expect(caps.plan).toBe('enterprise');
    expect(caps.limits.workflows_per_org).toBe(75);
    expect(limitSource(caps, 'workflows_per_org')).toBe('override');
    expect(caps.limits.credentials).toBe(300);
    expect(limitSource(caps, 'credentials')).toBe('contract');
    expect(caps.limits.seats).toBe(40);
    expect(caps.flags.white_label).toBe(true);
    expect(caps.contract?.limits.workflows_per_org).toBe(20);
  });

  it('an expired override leaves the contract, and an ended contract leaves the subscription', () => {
    const lapsed = { limits: { workflows_per_org: 75 }, flags: {}, expiresAt: '2026-11-15T00:00:00.000Z' };
    const withContract = capabilitiesOf('alice', pro, catalog, now, { contract, overrides: lapsed });
    expect(withContract.limits.workflows_per_org).toBe(20);
    expect(limitSource(withContract, 'workflows_per_org')).toBe('contract');

    const after = new Date(Date.parse(contract.terms.endsAt) + 1);
    const ended = capabilitiesOf(
      'alice',
      { ...pro, currentPeriodEnd: '2028-01-01T00:00:00.000Z' },
      catalog,
      after,
      {
        contract,
      },
    );
    expect(ended.plan).toBe('pro');
    expect(ended.limits.workflows_per_org).toBe(catalog.pro.limits.workflows_per_org);
    expect(limitSource(ended, 'workflows_per_org')).toBe('plan');
  });
});
