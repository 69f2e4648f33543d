import { describe, expect, it } from 'vitest';
import { describeFailure } from '../../src/billing/failures.js';
import { StoreRejectedError, TABLE_LIMITS } from '../../src/billing/store.js';
import { InvocationContext } from '../../src/http/functions-runtime.js';
import { errorResponse } from '../../src/http/problem.js';
import { azuriteTables, servicesOver } from '../support/stores.js';

/** What `promise` rejected with, which must be a refusal by storage. */
async function refused(promise: Promise<unknown>): Promise<StoreRejectedError> {
  const error = await promise.then(
    () => undefined,
    (thrown: unknown) => thrown,
  );
  if (!(error instanceof StoreRejectedError))
    throw new Error('expected a StoreRejectedError', { cause: error });
  return error;
}

/** The HTTP answer and the processor's verdict for `error`: the two places a storage failure is judged. */
function judged(error: unknown) {
  const response = errorResponse(error, new InvocationContext({ functionName: 'storageRefusals' }));
  const headers = new Headers(response.headers as Record<string, string>);
  return {
    status: response.status,
    body: JSON.parse(String(response.body)) as unknown,
    retryAfter: headers.get('retry-after'),
    failure: describeFailure(error),
  };
}

describe('what Azurite refuses is for the caller to fix: 400 or 413, never a retryable 503', () => {
  it('a property over the limit, through the directory (a value the route would bound, sent past it)', async () => {
    const services = servicesOver(azuriteTables());
    const name = 'n'.repeat(TABLE_LIMITS.stringLength + 1);
    const error = await refused(services.directory.putOrg('org_big', { creatorId: 'user_big', name }));
    expect(error.limit).toBe('property_too_large');
    expect(judged(error)).toMatchObject({
      status: 400,
      body: { code: 'too_large_to_store', limit: 'property_too_large' },
      retryAfter: null,
      failure: { kind: 'permanent', code: 'store_rejected' },
    });
    // Nothing was half-written: the organization does not exist.
    expect(await services.directory.getOrg('org_big')).toBeUndefined();
  });

  it('an entity over 1 MiB and a transaction over 4 MiB (in UTF-8, as Azurite counts), through the port', async () => {
    const { billing } = azuriteTables();
    const chunk = 'x'.repeat(30_000);
    const entity = Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`p${i}`, chunk]));
    const tooBig = await refused(billing.upsert('owner_big', 'row', entity));
    expect(judged(tooBig)).toMatchObject({
      status: 413,
      body: { code: 'too_large_to_store', limit: 'entity_too_large' },
      retryAfter: null,
      failure: { kind: 'permanent' },
    });

    const rows = Array.from({ length: 10 }, (_, i) => ({
      kind: 'upsert' as const,
      rowKey: `r${i}`,
      props: Object.fromEntries(Array.from({ length: 14 }, (_, j) => [`p${j}`, chunk])),
    }));
    const transaction = await refused(billing.transact('owner_big', rows));
    expect(judged(transaction)).toMatchObject({
      status: 413,
      body: { code: 'too_large_to_store', limit: 'transaction_too_large' },
      retryAfter: null,
    });
  });
});
