import { z } from 'zod';
import type { AuditEntry } from '../audit/entry.js';
import { BillingError } from '../errors.js';

/**
 * What every operator change carries (the `/api/ops/...` settings): who made it (the admin token's
 * `sub`), the request behind it, why, and, for a revert, which audit row it undoes. Each becomes the
 * change's audit row, written in the same transaction as the change.
 */
export interface AdminChange {
  /** The admin's `sub`. */
  readonly actor: string;
  /** The request id (the invocation id): the audit row's cause and the unique part of its key. */
  readonly requestId: string;
  /** 1 to 500 characters. */
  readonly reason: string;
  /** The audit id of the change this one reverts. */
  readonly revertOf?: string | undefined;
}

export const reasonSchema = z.string().trim().min(1).max(500);

/** The audit fields an admin change shares, for `auditAction`. */
export function adminAudit(
  change: AdminChange,
  at: string,
): Pick<AuditEntry, 'at' | 'actor' | 'cause' | 'reason' | 'revertOf'> {
  return {
    at,
    actor: { kind: 'admin', id: change.actor },
    cause: {
      kind: 'admin',
      id: change.requestId,
      type: change.revertOf === undefined ? undefined : 'revert',
    },
    reason: change.reason,
    revertOf: change.revertOf,
  };
}

/**
 * A stored `before` that does not parse as the setting it should be (a row written by hand, or by another
 * version of this code): the revert applies nothing. 409 `unrevertible_before` over HTTP.
 */
export class UnrevertibleBeforeError extends BillingError {
  constructor(kind: string, detail: string, cause?: unknown) {
    super(
      'conflict',
      'unrevertible_before',
      `The audited "before" of this ${kind} change cannot be applied (${detail}); nothing was changed. Set the value by hand instead.`,
      undefined,
      undefined,
      { cause },
    );
    this.name = 'UnrevertibleBeforeError';
  }
}
