import type { HttpResponseInit, InvocationContext } from '@azure/functions';
import { BillingError, type BillingErrorKind, type FieldIssue, unavailable } from '../billing/errors.js';
import { PaymentsError } from '../billing/payments.js';
import { ConcurrencyExhaustedError, StoreError, StoreRejectedError } from '../billing/store.js';

/** RFC 9457 problem details, with our stable `code` as an extension member. */
export interface Problem {
  readonly type: string;
  readonly title: string;
  readonly status: number;
  readonly detail: string;
  readonly code: string;
  readonly errors?: readonly FieldIssue[];
  /** The invocation id, so a caller's report can be matched to our logs. */
  readonly instance?: string;
}

const STATUS: Record<BillingErrorKind, { status: number; title: string }> = {
  validation: { status: 400, title: 'Bad Request' },
  unauthenticated: { status: 401, title: 'Unauthorized' },
  forbidden: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not Found' },
  conflict: { status: 409, title: 'Conflict' },
  payload_too_large: { status: 413, title: 'Payload Too Large' },
  unsupported_media_type: { status: 415, title: 'Unsupported Media Type' },
  unavailable: { status: 503, title: 'Service Unavailable' },
  bad_gateway: { status: 502, title: 'Bad Gateway' },
  payment_required: { status: 402, title: 'Payment Required' },
};

/** Payment processor failures, each with the answer a client can act on. */
function fromPayments(error: PaymentsError): BillingError {
  switch (error.kind) {
    case 'rate_limited':
      return unavailable(
        'payments_rate_limited',
        'Stripe is rate limiting us; retry shortly.',
        error.retryAfterSeconds ?? 2,
      );
    case 'unavailable':
      return unavailable(
        'payments_unavailable',
        'Stripe is not answering; retry shortly.',
        error.retryAfterSeconds ?? 5,
      );
    case 'authentication':
      return unavailable(
        'payments_misconfigured',
        'Stripe refused our credentials or their permissions; operators are alerted.',
      );
    case 'declined':
      return new BillingError(
        'payment_required',
        'payment_declined',
        'The payment was declined and the plan did not change. Update the payment method in the billing portal.',
      );
    case 'not_found':
    case 'invalid_request':
      return new BillingError(
        'bad_gateway',
        'payments_rejected',
        `Stripe rejected the request: ${error.message}`,
      );
  }
}

/** `extensions` are extra members (RFC 9457 §3.2), e.g. what is left of an allowance. */
export function problemResponse(
  problem: Problem,
  headers: Record<string, string> = {},
  extensions: Readonly<Record<string, unknown>> = {},
): HttpResponseInit {
  return {
    status: problem.status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify({ ...extensions, ...problem }),
  };
}

/** The one place where errors become HTTP: known kinds keep their message, the rest are logged and hidden. */
export function errorResponse(thrown: unknown, context: InvocationContext): HttpResponseInit {
  const instance = context.invocationId;
  if (thrown instanceof PaymentsError) context.warn(`payments failure: ${thrown.kind}: ${thrown.message}`);
  const error = thrown instanceof PaymentsError ? fromPayments(thrown) : thrown;
  if (error instanceof BillingError) {
    const { status, title } = STATUS[error.kind];
    return problemResponse(
      {
        type: `/problems/${error.code}`,
        title,
        status,
        detail: error.message,
        code: error.code,
        ...(error.details ? { errors: error.details } : {}),
        instance,
      },
      error.kind === 'unauthenticated'
        ? { 'www-authenticate': 'Bearer' }
        : error.retryAfterSeconds !== undefined
          ? { 'retry-after': String(error.retryAfterSeconds) }
          : {},
      error.extensions,
    );
  }
  if (error instanceof StoreRejectedError) {
    // What the caller sent cannot be stored (too large, say): retrying the same request cannot help.
    context.warn(`storage refused the request: ${error.limit}: ${error.message}`);
    const tooLarge = error.limit === 'entity_too_large' || error.limit === 'transaction_too_large';
    return problemResponse(
      {
        type: '/problems/too_large_to_store',
        title: tooLarge ? 'Payload Too Large' : 'Bad Request',
        status: tooLarge ? 413 : 400,
        detail: `The request holds more than storage accepts (${error.limit.replaceAll('_', ' ')}); nothing was changed. Send less.`,
        code: 'too_large_to_store',
        instance,
      },
      {},
      { limit: error.limit },
    );
  }
  if (error instanceof ConcurrencyExhaustedError) {
    context.warn(`storage contended: ${error.message}`);
    return problemResponse(
      {
        type: '/problems/contended',
        title: 'Service Unavailable',
        status: 503,
        detail:
          'Too many concurrent changes to the same account; retry the same request shortly (retries are safe).',
        code: 'contended',
        instance,
      },
      { 'retry-after': '1' },
    );
  }
  if (error instanceof StoreError) {
    context.error(`storage failure: ${error.message}`);
    return problemResponse(
      {
        type: '/problems/storage_unavailable',
        title: 'Service Unavailable',
        status: 503,
        detail:
          'Storage did not answer, so the request may not have completed. Retry the same request: retries are safe and finish or undo what was started.',
        code: 'storage_unavailable',
        instance,
      },
      { 'retry-after': '1' },
    );
  }
  context.error('unhandled error', error);
  return problemResponse({
    type: '/problems/internal',
    title: 'Internal Server Error',
    status: 500,
    detail: 'An unexpected error occurred; it has been logged.',
    code: 'internal',
    instance,
  });
}
