import type { HttpResponseInit, InvocationContext } from '@azure/functions';
import { BillingError, type BillingErrorKind, type FieldIssue } from '../billing/errors.js';
import { StoreError } from '../billing/store.js';

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
};

export function problemResponse(problem: Problem, headers: Record<string, string> = {}): HttpResponseInit {
  return {
    status: problem.status,
    headers: { 'content-type': 'application/problem+json', 'cache-control': 'no-store', ...headers },
    body: JSON.stringify(problem),
  };
}

/** The one place where errors become HTTP: known kinds keep their message, the rest are logged and hidden. */
export function errorResponse(error: unknown, context: InvocationContext): HttpResponseInit {
  const instance = context.invocationId;
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
      error.kind === 'unauthenticated' ? { 'www-authenticate': 'Bearer' } : {},
    );
  }
  if (error instanceof StoreError) {
    context.error(`storage failure: ${error.message}`);
    return problemResponse(
      {
        type: '/problems/storage_unavailable',
        title: 'Service Unavailable',
        status: 503,
        detail: 'Storage did not answer; nothing was changed. Retry with the same request.',
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
