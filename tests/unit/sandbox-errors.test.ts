import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { fromZodError } from '../../tools/stripe-sandbox/errors.js';
import { checkoutCreate, priceList, refundCreate } from '../../tools/stripe-sandbox/params.js';

/** The sandbox's answer to parameters `schema` refuses (parsed as its server parses them). */
function refusal(schema: z.ZodType, input: unknown) {
  const parsed = schema.safeParse(input, { reportInput: true });
  if (parsed.success) throw new Error('expected the parameters to be refused');
  const error = fromZodError(parsed.error);
  return { status: error.status, message: error.message, ...error.options };
}

describe('the sandbox names parameter errors the way Stripe does, from the zod issue, not its message', () => {
  it.each([
    ['a non-numeric integer', refundCreate, { amount: 'ten' }, 'amount'],
    ['an integer out of range', refundCreate, { amount: '99999999999999999999' }, 'amount'],
    ['an integer below its minimum', refundCreate, { amount: '0' }, 'amount'],
  ])('%s is parameter_invalid_integer', (_name, schema, input, param) => {
    expect(refusal(schema, input)).toMatchObject({ status: 400, code: 'parameter_invalid_integer', param });
  });

  it('an empty required value is parameter_invalid_empty', () => {
    const input = { mode: 'payment', line_items: [{ price: '', quantity: '1' }] };
    expect(refusal(checkoutCreate, input)).toMatchObject({
      code: 'parameter_invalid_empty',
      param: 'line_items[0][price]',
    });
  });

  it('a whole-number check on a JSON number is parameter_invalid_integer', () => {
    expect(refusal(z.strictObject({ seconds: z.number().int() }), { seconds: 1.5 })).toMatchObject({
      code: 'parameter_invalid_integer',
    });
  });

  it('a message that merely mentions integers or emptiness carries no code', () => {
    const schema = z.strictObject({ note: z.string().max(3, 'not an integer, and not empty either') });
    expect(refusal(schema, { note: 'long' }).code).toBeUndefined();
    // The limit check's own message names no code either: Stripe answers it without one.
    expect(refusal(priceList, { limit: '500' }).code).toBeUndefined();
  });
});
