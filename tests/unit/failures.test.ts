import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { BillingError, unavailable, validationError } from '../../src/billing/errors.js';
import { type EventRef, EventShapeError } from '../../src/billing/event-ref.js';
import {
  classifyFailure,
  describeFailure,
  RedeliveryFailedError,
  redeliveryDelaySeconds,
} from '../../src/billing/failures.js';
import { UnknownCustomerError, UnmappedPriceError } from '../../src/billing/lifecycle.js';
import { CorruptRowError } from '../../src/billing/owner/rows.js';
import { PaymentsError } from '../../src/billing/payments.js';
import {
  type EventQueue,
  type QueueMessage,
  QueueUnavailableError,
  type SendOptions,
} from '../../src/billing/queue.js';
import {
  ConcurrencyExhaustedError,
  EtagMismatchError,
  StoreError,
  StoreRejectedError,
} from '../../src/billing/store.js';
import type { Services } from '../../src/composition.js';
import { processBillingEvent } from '../../src/functions/process-billing-event.js';
import { InvocationContext } from '../../src/http/functions-runtime.js';
import { memoryServices } from '../support/memory.js';

const price = {
  id: 'price_x',
  lookupKey: null,
  unitAmount: 1,
  currency: 'usd',
  interval: 'day' as const,
  productId: 'prod_x',
  productMetadata: {},
};

describe('classifyFailure', () => {
  it.each([
    ['Stripe 429', new PaymentsError('rate_limited', 'slow down', 2), 'transient'],
    ['Stripe 5xx or network', new PaymentsError('unavailable', 'down'), 'transient'],
    ['storage unavailable', new StoreError('down', 'billing'), 'transient'],
    ['storage contended', new ConcurrencyExhaustedError('busy', 'billing'), 'transient'],
    ['a lost race', new EtagMismatchError('moved', 'billing'), 'transient'],
    ['BillingError unavailable', unavailable('queue_unavailable', 'later', 5), 'transient'],
    ['an unknown error', new Error('?'), 'transient'],
    ['a thrown string', 'boom', 'transient'],
    ['a malformed event', new EventShapeError('event_invalid', 'bad'), 'permanent'],
    ['an unknown customer', new UnknownCustomerError('cus_x'), 'permanent'],
    ['an unmapped price', new UnmappedPriceError(price), 'permanent'],
    ['Stripe not found', new PaymentsError('not_found', 'gone'), 'permanent'],
    ['Stripe invalid request', new PaymentsError('invalid_request', 'no'), 'permanent'],
    ['Stripe authentication', new PaymentsError('authentication', 'key'), 'permanent'],
    ['a corrupt row', new CorruptRowError('o', 'r', 'bad'), 'permanent'],
    ['a zod error', z.object({ a: z.string() }).safeParse({}).error, 'permanent'],
    [
      'storage refusing the request',
      new StoreRejectedError('big', 'billing', 'entity_too_large'),
      'permanent',
    ],
    ['another BillingError', validationError('bad', 'bad'), 'permanent'],
  ])('%s is %s', (_name, error, expected) => {
    expect(classifyFailure(error)).toBe(expected);
  });

  it('follows the cause of a wrapper it does not know, and names the code', () => {
    const wrapped = new Error('wrapped', { cause: new UnknownCustomerError('cus_x') });
    expect(describeFailure(wrapped)).toEqual({ kind: 'permanent', code: 'unknown_customer' });
    expect(describeFailure(new PaymentsError('unavailable', 'x'))).toEqual({
      kind: 'transient',
      code: 'payments_unavailable',
    });
    // Not by message text: a message that reads permanent changes nothing.
    expect(classifyFailure(new Error('Stripe customer cus_x belongs to no billing owner we know'))).toBe(
      'transient',
    );
    expect(new BillingError('unavailable', 'x', 'y').kind).toBe('unavailable');
  });

  it('names a queue that did not take a message as transient queue_unavailable', () => {
    const error = new QueueUnavailableError('send failed', 'billing-events', { cause: new Error('frozen') });
    expect(describeFailure(error)).toEqual({ kind: 'transient', code: 'queue_unavailable' });
  });
});

describe('redeliveryDelaySeconds', () => {
  const settings = { baseSeconds: 5, maxSeconds: 1800 };
  it('doubles from the base, up to the cap, jittered by up to a quarter', () => {
    const top = (attempt: number) => redeliveryDelaySeconds(attempt, settings, () => 1);
    const bottom = (attempt: number) => redeliveryDelaySeconds(attempt, settings, () => 0);
    expect([1, 2, 3, 4].map(top)).toEqual([5, 10, 20, 40]);
    expect([1, 2, 3, 4].map(bottom)).toEqual([4, 8, 15, 30]);
    expect(top(12)).toBe(1800);
    expect(top(1000)).toBe(1800);
    expect(bottom(12)).toBe(1350);
  });

  it('with the defaults, 20 attempts cover several hours', () => {
    let least = 0;
    for (let attempt = 1; attempt < 20; attempt++)
      least += redeliveryDelaySeconds(attempt, settings, () => 0);
    expect(least / 3600).toBeGreaterThan(4);
  });
});

describe('processBillingEvent failure handling', () => {
  const ref: EventRef = {
    v: 2,
    eventId: 'evt_fail1',
    type: 'invoice.payment_failed',
    objectId: 'in_1',
    customerId: 'cus_1',
    attempt: 0,
  };
  const message = (body: EventRef) => JSON.stringify({ id: body.eventId, orderingKey: 'cus_1', body });

  function setup(failure: unknown, options: { sendFails?: boolean; env?: Record<string, string> } = {}) {
    const sent: Array<{ message: QueueMessage; options: SendOptions | undefined }> = [];
    const queue: EventQueue = {
      name: 'test',
      async send(message, sendOptions) {
        if (options.sendFails) throw new Error('queue down');
        sent.push({ message, options: sendOptions });
      },
      ping: async () => undefined,
    };
    const base = memoryServices({ BILLING_EVENT_MAX_ATTEMPTS: '3', ...options.env });
    const services: Services = {
      ...base,
      queue,
      events: {
        process: async () => {
          throw failure;
        },
      },
    };
    const logs: string[] = [];
    const context = new InvocationContext({
      functionName: 'processBillingEvent',
      logHandler: (_level, ...args) => logs.push(args.map(String).join(' ')),
    });
    return { services, sent, logs, context };
  }

  it('re-sends a transient failure with attempt + 1, its own message id and a delay, and completes', async () => {
    const { services, sent, context } = setup(new PaymentsError('unavailable', 'Stripe down'));
    await processBillingEvent(message(ref), context, services);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.message).toMatchObject({ id: 'evt_fail1~1', orderingKey: 'cus_1', body: { attempt: 1 } });
    expect(sent[0]?.options?.delaySeconds).toBeGreaterThanOrEqual(1);
    expect((await services.poison.list({ limit: 10 })).items).toEqual([]);
  });

  it('poisons a permanent failure at once, with its reason, and sends nothing', async () => {
    const { services, sent, context, logs } = setup(new UnknownCustomerError('cus_1'));
    await processBillingEvent(message(ref), context, services);
    expect(sent).toEqual([]);
    const [entry] = (await services.poison.list({ limit: 10 })).items;
    expect(entry).toMatchObject({
      eventId: 'evt_fail1',
      type: 'invoice.payment_failed',
      reason: 'permanent',
      code: 'unknown_customer',
      attempts: 1,
      ref: { ...ref, attempt: 0 },
    });
    expect(logs.join('\n')).toMatch(
      /evt_fail1 \(invoice.payment_failed\) poisoned \(permanent, unknown_customer\)/,
    );
  });

  it('poisons a transient failure once every attempt is used', async () => {
    const { services, sent, context } = setup(new StoreError('down', 'billing'));
    await processBillingEvent(message({ ...ref, attempt: 2 }), context, services);
    expect(sent).toEqual([]);
    const [entry] = (await services.poison.list({ limit: 10 })).items;
    expect(entry).toMatchObject({ reason: 'exhausted', code: 'store_unavailable', attempts: 3 });
  });

  it('poisons a message that is not a billing event, keeping its text', async () => {
    const { services, context } = setup(new Error('not reached'));
    await processBillingEvent('{"hello":', context, services);
    const [entry] = (await services.poison.list({ limit: 10 })).items;
    expect(entry).toMatchObject({
      eventId: null,
      reason: 'unreadable',
      raw: '{"hello":',
      code: 'event_invalid',
    });
  });

  it('throws when the re-send fails, so the host redelivers', async () => {
    const { services, context } = setup(new PaymentsError('rate_limited', 'slow'), { sendFails: true });
    await expect(processBillingEvent(message(ref), context, services)).rejects.toBeInstanceOf(
      RedeliveryFailedError,
    );
  });
});
