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
    options: {
      /** Extra members of the problem+json body (RFC 9457 §3.2), e.g. the limit that was reached. */
      readonly extensions?: Readonly<Record<string, unknown>>;
      readonly cause?: unknown;
    } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'BillingError';
    this.extensions = options.extensions ?? {};
  }

  readonly extensions: Readonly<Record<string, unknown>>;
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
export const unavailable = (code: string, message: string, retryAfterSeconds?: number, cause?: unknown) =>
  new BillingError('unavailable', code, message, undefined, retryAfterSeconds, { cause });

/**
 * A directory write refused because it would exceed a limit (402): `code` is `limit_exceeded`, or
 * `payment_required` when paying the overdue invoice would allow it; nothing was written.
 */
export function limitReached(decision: {
  readonly feature: string;
  readonly reason: string;
  readonly limit: number | null;
  readonly used: number | null;
  readonly remaining: number | null;
  readonly plan: string;
}): BillingError {
  const code = decision.reason === 'payment_required' ? 'payment_required' : 'limit_exceeded';
  const message =
    code === 'payment_required'
      ? `Payment is overdue: the account is on free limits (${decision.feature} ${decision.used ?? 0} of ${decision.limit ?? 'unlimited'}) until the invoice is paid. Nothing was written.`
      : `The ${decision.plan} plan allows ${decision.limit ?? 'unlimited'} ${decision.feature}; ${decision.used ?? 0} in use. Upgrade, or remove some first. Nothing was written.`;
  return new BillingError('payment_required', code, message, undefined, undefined, {
    extensions: {
      feature: decision.feature,
      limit: decision.limit,
      used: decision.used,
      remaining: decision.remaining,
    },
  });
}
