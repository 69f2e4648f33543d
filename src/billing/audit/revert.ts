import type { Clock } from '../clock.js';
import { conflict, notFound } from '../errors.js';
import { commit, RETRY, write } from '../storage/commit.js';
import { type EntityTable, EtagMismatchError, type TransactionResult } from '../store.js';
import { auditAction, GLOBAL_AUDIT_PARTITION, type RevertHandler, type RevertibleKind } from './entry.js';
import { decodeAuditId, encodeAuditId } from './ids.js';
import { type AuditRecord, parseAuditRow } from './parse.js';
import { ownerOfPartition } from './query.js';

/**
 * `POST /api/ops/audit/{id}/revert`: undoes one admin change by handing its `before` to the module that
 * owns that kind of change (a `RevertHandler`, registered in composition), which applies it as a new
 * admin change audited with `revertOf`.
 *
 * A change is reverted once. A marker row beside the audited row (`revert|<its key>`) is created before
 * the handler runs (a concurrent second revert fails on it: 409 `revert_in_progress`) and completed with
 * the revert's own audit row in one transaction after it (later reverts: 409 `already_reverted`). A
 * revert that crashed after creating the marker is taken over once the marker is older than
 * `STALE_REVERT_MS`; handlers apply a `before`, so running one again is harmless.
 */

export const STALE_REVERT_MS = 5 * 60_000;

export type RevertRegistry = ReadonlyMap<RevertibleKind, RevertHandler>;

/** @throws Error when two handlers claim one kind: a wiring mistake, found at start-up. */
export function createRevertRegistry(handlers: readonly RevertHandler[]): RevertRegistry {
  const registry = new Map<RevertibleKind, RevertHandler>();
  for (const handler of handlers) {
    if (registry.has(handler.kind)) throw new Error(`Two revert handlers for "${handler.kind}"`);
    registry.set(handler.kind, handler);
  }
  return registry;
}

export interface RevertRequest {
  readonly id: string;
  readonly reason: string;
  /** The admin's `sub`. */
  readonly actor: string;
  readonly requestId: string;
}

export interface RevertOutcome {
  readonly reverted: AuditRecord;
  /** The audit id of the row recording this revert. */
  readonly revertId: string;
}

export interface AuditReverter {
  /**
   * @throws InvalidAuditIdError; BillingError `not_found` (`audit_not_found`) or `conflict`
   * (`stripe_change`, `not_revertible`, `not_revertible_here`, `already_reverted`, `revert_in_progress`)
   */
  revert(request: RevertRequest): Promise<RevertOutcome>;
}

const markerKey = (rowKey: string) => `revert|${rowKey}`;

export function createAuditReverter(deps: {
  readonly table: EntityTable;
  readonly registry: RevertRegistry;
  readonly clock: Clock;
  /** @default console.warn */
  readonly log?: (message: string, error: unknown) => void;
}): AuditReverter {
  const { table, registry, clock } = deps;
  const log = deps.log ?? console.warn;

  /** Claims the revert of `rowKey`, or says why not. Answers the marker's ETag. */
  function claim(partitionKey: string, rowKey: string, requestId: string): Promise<string | undefined> {
    const committed = (result: TransactionResult) => result.etags.get(markerKey(rowKey));
    return commit<string | undefined>(
      table,
      partitionKey,
      async () => {
        const marker = await table.get(partitionKey, markerKey(rowKey));
        const at = clock.now().toISOString();
        const props = { state: 'reverting', requestId, at };
        if (marker === undefined)
          return write([{ kind: 'create', rowKey: markerKey(rowKey), props }], committed);
        if (marker.props.state === 'done')
          throw conflict(
            'already_reverted',
            `This change was reverted already (${String(marker.props.revertId)}).`,
          );
        const since = Date.parse(String(marker.props.at));
        if (!(clock.now().getTime() - since > STALE_REVERT_MS))
          throw conflict(
            'revert_in_progress',
            'A revert of this change is in progress; look again in a minute.',
          );
        return write(
          [{ kind: 'update', rowKey: markerKey(rowKey), props, etag: marker.etag }],
          committed,
          () => RETRY,
        );
      },
      { what: `claiming the revert of ${partitionKey}/${rowKey}` },
    );
  }

  return {
    async revert({ id, reason, actor, requestId }) {
      const { partitionKey, rowKey } = decodeAuditId(id);
      const row = await table.get(partitionKey, rowKey);
      if (row === undefined) throw notFound('audit_not_found', `No audit row ${id}.`);
      const record = parseAuditRow(row, ownerOfPartition);
      if (record.actor.kind === 'stripe' || record.cause.kind === 'event') {
        throw conflict(
          'stripe_change',
          'This change came from Stripe: change it there (the customer portal, POST /api/billing/portal, for the customer; the Stripe dashboard for an operator), and its webhook will bring the change here.',
        );
      }
      if (record.revertible === undefined)
        throw conflict(
          'not_revertible',
          `A ${record.kind} change cannot be reverted; make a new change instead.`,
        );
      const handler = registry.get(record.revertible);
      if (handler === undefined)
        throw conflict(
          'not_revertible_here',
          `No revert is registered for ${record.revertible} changes in this deployment; make a new change instead.`,
        );
      const claimed = await claim(partitionKey, rowKey, requestId);
      try {
        await handler.revert({
          ownerId: partitionKey === GLOBAL_AUDIT_PARTITION ? undefined : partitionKey,
          before: record.before,
          actor,
          reason,
          revertOf: id,
          requestId,
        });
      } catch (error) {
        // The handler refused or failed: give the claim back (unless someone took it over), so the operator
        // can try again at once rather than wait for it to go stale; the handler's own error is the answer.
        await table.delete(partitionKey, markerKey(rowKey), claimed).catch((release: unknown) => {
          if (!(release instanceof EtagMismatchError)) log(`revert of ${id}: claim not released`, release);
        });
        throw error;
      }
      const at = clock.now().toISOString();
      const entry = auditAction(
        {
          at,
          kind: 'audit_reverted',
          actor: { kind: 'admin', id: actor },
          cause: { kind: 'admin', id: requestId, type: 'audit.revert' },
          reason,
          before: record.after,
          after: record.before,
          revertOf: id,
          details: { revertedKind: record.kind },
        },
        `revert-${requestId}`,
      );
      const revertId = await commit<string>(
        table,
        partitionKey,
        async () => {
          const marker = await table.get(partitionKey, markerKey(rowKey));
          const done = { state: 'done', requestId, at, revertId: '' };
          const recorded = encodeAuditId(partitionKey, entry.rowKey);
          const markerAction =
            marker === undefined
              ? ({
                  kind: 'create',
                  rowKey: markerKey(rowKey),
                  props: { ...done, revertId: recorded },
                } as const)
              : ({
                  kind: 'update',
                  rowKey: markerKey(rowKey),
                  props: { ...done, revertId: recorded },
                  etag: marker.etag,
                } as const);
          return write([markerAction, entry], () => recorded);
        },
        { what: `recording the revert of ${partitionKey}/${rowKey}` },
      );
      return { reverted: record, revertId };
    },
  };
}
