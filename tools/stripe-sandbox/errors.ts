import { z } from 'zod';

/** Stripe's v1 error types; the SDK picks its error class from the status code and these. */
export type StripeErrorType = 'api_error' | 'card_error' | 'idempotency_error' | 'invalid_request_error';

export interface StripeErrorBody {
  error: {
    type: StripeErrorType;
    message: string;
    param?: string;
    code?: string;
    decline_code?: string;
    doc_url?: string;
    request_log_url?: string;
  };
}

/**
 * An error the sandbox answers with, in Stripe's `{ error: { type, message, param?, code? } }` format.
 * `replayable` says whether an idempotent replay returns it again: Stripe saves the result of a request
 * once the endpoint has started executing, but not when the parameters failed validation.
 */
export class SandboxError extends Error {
  constructor(
    readonly status: number,
    readonly type: StripeErrorType,
    message: string,
    readonly options: {
      readonly param?: string;
      readonly code?: string;
      readonly declineCode?: string;
      readonly replayable?: boolean;
    } = {},
  ) {
    super(message);
    this.name = 'SandboxError';
  }

  get replayable(): boolean {
    return this.options.replayable ?? true;
  }

  body(): StripeErrorBody {
    const { param, code, declineCode } = this.options;
    return {
      error: {
        type: this.type,
        message: this.message,
        ...(param !== undefined ? { param } : {}),
        ...(code !== undefined
          ? { code, doc_url: `https://stripe.com/docs/error-codes/${code.replace(/_/g, '-')}` }
          : {}),
        ...(declineCode !== undefined ? { decline_code: declineCode } : {}),
      },
    };
  }
}

export function invalidRequest(message: string, param?: string, code?: string): SandboxError {
  return new SandboxError(400, 'invalid_request_error', message, {
    ...(param !== undefined ? { param } : {}),
    ...(code !== undefined ? { code } : {}),
  });
}

/** Stripe's wording for an id that does not exist: 404, code `resource_missing`, param naming the id. */
export function noSuch(kind: string, id: string, param = 'id'): SandboxError {
  return new SandboxError(404, 'invalid_request_error', `No such ${kind}: '${id}'`, {
    param,
    code: 'resource_missing',
  });
}

export function cardDeclined(): SandboxError {
  return new SandboxError(402, 'card_error', 'Your card was declined.', {
    code: 'card_declined',
    declineCode: 'generic_decline',
  });
}

/** `items.0.price` -> `items[0][price]`, the way Stripe names parameters in errors. */
export function bracketParam(path: ReadonlyArray<PropertyKey>): string {
  const [first, ...rest] = path.map(String);
  return `${first ?? ''}${rest.map((segment) => `[${segment}]`).join('')}`;
}

/** The Stripe error codes a parameter check can name (see `stripeCoded`). */
export type ParameterCode = 'parameter_invalid_integer' | 'parameter_invalid_empty';

const codedParams = z.object({
  stripeCode: z.enum(['parameter_invalid_integer', 'parameter_invalid_empty']),
});

/**
 * Options for a zod `refine` whose failure Stripe reports with `code`: the code rides on the issue's
 * `params`, so `fromZodError` reads it from there instead of guessing it from the message.
 */
export function stripeCoded(code: ParameterCode, message: string) {
  return { message, params: { stripeCode: code } };
}

/** The Stripe code of a failed check, from the issue's kind and the code its check carries. */
function parameterCode(issue: z.core.$ZodIssue): ParameterCode | undefined {
  if (issue.code === 'custom') return codedParams.safeParse(issue.params).data?.stripeCode;
  // A JSON number that is not whole, where an integer is expected (`z.number().int()`).
  if (issue.code === 'invalid_type' && issue.expected === 'int') return 'parameter_invalid_integer';
  return undefined;
}

/** Turns the first zod issue into the error Stripe would give for the same mistake. */
export function fromZodError(error: z.ZodError, prefix: ReadonlyArray<PropertyKey> = []): SandboxError {
  const issue = error.issues[0];
  if (!issue)
    return new SandboxError(400, 'invalid_request_error', 'Invalid request.', { replayable: false });
  const path = [...prefix, ...issue.path];
  const notReplayable = { replayable: false } as const;
  if (issue.code === 'unrecognized_keys') {
    const param = bracketParam([...path, issue.keys[0] ?? '']);
    return new SandboxError(400, 'invalid_request_error', `Received unknown parameter: ${param}`, {
      param,
      code: 'parameter_unknown',
      ...notReplayable,
    });
  }
  const param = bracketParam(path);
  if (issue.code === 'invalid_type' && issue.input === undefined) {
    return new SandboxError(400, 'invalid_request_error', `Missing required param: ${param}.`, {
      param,
      code: 'parameter_missing',
      ...notReplayable,
    });
  }
  if (issue.code === 'invalid_value') {
    const allowed = issue.values.map(String);
    return new SandboxError(
      400,
      'invalid_request_error',
      `Invalid ${param}: must be one of ${allowed.slice(0, -1).join(', ')}${allowed.length > 1 ? ' or ' : ''}${allowed.at(-1) ?? ''}`,
      { param, ...notReplayable },
    );
  }
  const code = parameterCode(issue);
  return new SandboxError(400, 'invalid_request_error', `${issue.message} (${param || 'request'})`, {
    param,
    ...(code !== undefined ? { code } : {}),
    ...notReplayable,
  });
}
