/**
 * The domain's error hierarchy. Each kind has a stable machine-readable `code`; `src/http/problem.ts`
 * maps kinds to HTTP statuses in one place. Messages tell the reader what to do next.
 */
export type BillingErrorKind =
  | 'validation'
  | 'unauthenticated'
  | 'forbidden'
  | 'not_found'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'unavailable'
  /** The customer's payment method was declined. */
  | 'payment_required'
  /** An upstream (the payment processor) refused what we asked. */
  | 'bad_gateway';

export class BillingError extends Error {
  constructor(
    readonly kind: BillingErrorKind,
    /** Stable, machine-readable; clients branch on it. */
    readonly code: string,
    message: string,
    /** Field-level details, for validation errors. */
    readonly details?: readonly FieldIssue[],
    /** For transient failures: when a retry may succeed (sent as Retry-After). */
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'BillingError';
  }
}

export interface FieldIssue {
  /** Dotted path into the request body or query, empty for the whole body. */
  readonly path: string;
  readonly message: string;
}

export const validationError = (code: string, message: string, details?: readonly FieldIssue[]) =>
  new BillingError('validation', code, message, details);
export const notFound = (code: string, message: string) => new BillingError('not_found', code, message);
export const forbidden = (code: string, message: string) => new BillingError('forbidden', code, message);
export const conflict = (code: string, message: string) => new BillingError('conflict', code, message);
export const unauthenticated = (code: string, message: string) =>
  new BillingError('unauthenticated', code, message);
/** A failure on our side; with `retryAfterSeconds` it is transient and worth retrying, without it it needs an operator. */
export const unavailable = (code: string, message: string, retryAfterSeconds?: number) =>
  new BillingError('unavailable', code, message, undefined, retryAfterSeconds);
