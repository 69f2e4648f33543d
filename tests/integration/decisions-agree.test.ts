import { describe, expect, it } from 'vitest';
import { usageRowKey } from '../../src/billing/usage.js';
import type { Services } from '../../src/composition.js';
import { givenOwnerRows, givenSubscription } from '../support/memory.js';
import { STORES, servicesOver } from '../support/stores.js';

/**
 * A check and a consumption for the same owner at the same moment give the same answer: both decide
 * through `access/decide.ts` from the same snapshot. On the memory twin and on Azurite.
 */

async function givenUsage(services: Services, ownerId: string, allowanceUsed: number, credits: number) {
  const { period } = await services.entitlements.capabilities(ownerId);
  await givenOwnerRows(services, ownerId, {
    [usageRowKey('executions', period)]: {
      used: allowanceUsed,
      allowanceUsed,
      periodKey: period.key,
      periodStart: period.start.toISOString(),
      periodEnd: period.end.toISOString(),
    },
  });
  if (credits > 0)
    await services.credits.grantCredits({
      ownerId,
      credits,
      sourceId: `cs_${ownerId}`,
      description: 'test credits',
    });
}

async function both(services: Services, ownerId: string, quantity: number) {
  const check = await services.entitlements.check({
    subject: { userId: ownerId },
    feature: 'executions',
    quantity,
  });
  const consume = await services.usage.consume({
    subject: { userId: ownerId },
    meter: 'executions',
    quantity,
    idempotencyKey: `run-${ownerId}`,
  });
  return {
    check: { allowed: check.allowed, reason: check.allowed ? 'allowed' : check.reason },
    consume: {
      allowed: consume.kind === 'consumed',
      reason: consume.kind === 'consumed' ? 'allowed' : consume.code,
    },
  };
}

describe.each(STORES)('check and consume agree (%s)', (_name, makeTables) => {
  it('for a locked Pro owner with 3 credits asking for 5 runs: payment_required from both', async () => {
    const services = servicesOver(makeTables());
    await givenSubscription(services, 'alice', { plan: 'pro', status: 'past_due' });
    // 9,998 of Pro's 10,000 were used while paid: paying leaves 2, plus 3 credits, which covers 5.
    await givenUsage(services, 'alice', 9_998, 3);
    const answers = await both(services, 'alice', 5);
    expect(answers.check).toEqual({ allowed: false, reason: 'payment_required' });
    expect(answers.consume).toEqual(answers.check);
  });

  const statuses = ['active', 'grace', 'past_due', 'canceled'] as const;
  const cases = statuses.flatMap((status) =>
    [0, 995, 1_000, 9_998].flatMap((used) =>
      [0, 3, 100].flatMap((credits) => [1, 5, 50].map((quantity) => ({ status, used, credits, quantity }))),
    ),
  );

  it(`for every one of ${cases.length} combinations of payment state, usage, credits and quantity`, async () => {
    const services = servicesOver(makeTables());
    const disagreements: string[] = [];
    for (const [i, c] of cases.entries()) {
      const owner = `owner${i}`;
      await givenSubscription(services, owner, { plan: 'pro', status: c.status });
      await givenUsage(services, owner, c.used, c.credits);
      const answers = await both(services, owner, c.quantity);
      if (JSON.stringify(answers.check) !== JSON.stringify(answers.consume))
        disagreements.push(
          `${JSON.stringify(c)}: check ${JSON.stringify(answers.check)}, consume ${JSON.stringify(answers.consume)}`,
        );
    }
    expect(disagreements).toEqual([]);
  });
});
